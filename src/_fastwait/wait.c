/* wait(fs, *, timeout=None, return_when=ALL_COMPLETED)
 *
 * asyncio.wait and asyncio.tasks._wait of the running interpreter (the same
 * code on 3.11-3.13), as a native coroutine (coro.c): the argument checks
 * at the first step, in the stdlib's order and words; one done-callback per
 * future (the WaitState itself, a C callable); the waiter future; the
 * timeout's TimerHandle; the callbacks removed again however the wait ends;
 * fresh (done, pending) sets.
 */
#include "state.h"

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fw_state *st;
    PyObject *fs;          /* the argument, then set(fs) */
    PyObject *items;       /* list(set(fs)): the set's order, for the passes */
    PyObject *timeout;
    PyObject *return_when;
    PyObject *waiter;
    PyObject *timer;       /* TimerHandle or NULL */
    PyObject *graph_waiter; /* 3.14+: cur_task of the call-graph edges */
    Py_ssize_t counter;
    char first_completed;  /* return_when == FIRST_COMPLETED */
    char first_exception;  /* return_when == FIRST_EXCEPTION */
    char waiting;          /* callbacks are registered */
} WaitState;

#define Wait_CAST(op) ((WaitState *)(op))

/* timeout_handle.cancel(); waiter.set_result(None) if not done. */
static int
release_waiter(WaitState *self, int cancel_timer)
{
    fw_state *st = self->st;
    if (cancel_timer && self->timer != NULL) {
        PyObject *r = PyObject_CallMethodNoArgs(self->timer, st->str_cancel);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    return self->waiter == NULL ? 0 : fw_release_waiter(st, self->waiter);
}

/* _on_completion(f): a future finished. */
static int
on_completion(WaitState *self, PyObject *f)
{
    fw_state *st = self->st;
    self->counter--;
    int release = self->counter <= 0 || self->first_completed;
    if (!release && self->first_exception) {
        int cancelled = fw_fut_bool(st, f, FW_CANCELLED);
        if (cancelled < 0) {
            return -1;
        }
        if (!cancelled) {
            PyObject *exc = fw_fut_call(st, f, FW_EXCEPTION);
            if (exc == NULL) {
                return -1;
            }
            release = exc != Py_None;
            Py_DECREF(exc);
        }
    }
    if (release && release_waiter(self, 1) < 0) {
        return -1;
    }
    /* 3.14+: futures.future_discard_from_awaited_by(f, cur_task) */
    return fw_graph_discard(st, f, self->graph_waiter);
}

/* The loop calls the state: state(f) as a done-callback, state() as the
 * timeout (_release_waiter). */
static PyObject *
wait_state_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                      PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) || nargs > 1) {
        PyErr_SetString(PyExc_TypeError,
                        "wait callback takes at most 1 argument");
        return NULL;
    }
    Py_INCREF(op);
    int r = nargs == 0 ? release_waiter(Wait_CAST(op), 0)
                       : on_completion(Wait_CAST(op), args[0]);
    Py_DECREF(op);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

/* The checks of wait() and the set-up of _wait(); returns the waiter. */
static PyObject *
wait_start(WaitState *self)
{
    fw_state *st = self->st;
    PyObject *fs = self->fs;

    /* if futures.isfuture(fs) or coroutines.iscoroutine(fs): TypeError */
    int bad = fw_is_future_or_coroutine(st, fs);
    if (bad != 0) {
        if (bad > 0) {
            fw_type_error_naming_type("expect a list of futures, not %U", fs);
        }
        return NULL;
    }
    int truth = PyObject_IsTrue(fs);
    if (truth <= 0) {
        if (truth == 0) {
            PyErr_SetString(PyExc_ValueError,
                            "Set of Tasks/Futures is empty.");
        }
        return NULL;
    }
    /* return_when not in (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED) */
    PyObject *modes[3] = {st->FIRST_COMPLETED, st->FIRST_EXCEPTION,
                          st->ALL_COMPLETED};
    int eq[3] = {0, 0, 0};
    int valid = 0;
    for (int i = 0; i < 3 && !valid; i++) {
        eq[i] = PyObject_RichCompareBool(self->return_when, modes[i], Py_EQ);
        if (eq[i] < 0) {
            return NULL;
        }
        valid = eq[i];
    }
    if (!valid) {
        PyErr_Format(PyExc_ValueError, "Invalid return_when value: %S",
                     self->return_when);
        return NULL;
    }
    self->first_completed = (char)eq[0];
    self->first_exception = (char)eq[1];

    PyObject *set = PySet_New(fs);
    if (set == NULL) {
        return NULL;
    }
    Py_SETREF(self->fs, set);
    self->items = PySequence_List(set);
    if (self->items == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(self->items);

    /* any(coroutines.iscoroutine(f) for f in fs) */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyList_GET_ITEM(self->items, i);
        if (Py_TYPE(f) == st->TaskType || Py_TYPE(f) == st->FutureType) {
            continue;
        }
        PyObject *r = PyObject_CallOneArg(st->iscoroutine, f);
        int is_coro = r == NULL ? -1 : PyObject_IsTrue(r);
        Py_XDECREF(r);
        if (is_coro != 0) {
            if (is_coro > 0) {
                PyErr_SetString(PyExc_TypeError,
                                "Passing coroutines is forbidden, use tasks "
                                "explicitly.");
            }
            return NULL;
        }
    }

    PyObject *loop = PyObject_CallNoArgs(st->get_running_loop);
    if (loop == NULL) {
        return NULL;
    }

    /* _wait(fs, timeout, return_when, loop) */
    if (n == 0 && !st->optimize) {
        Py_DECREF(loop);
        PyErr_SetString(PyExc_AssertionError, "Set of Futures is empty.");
        return NULL;
    }
    self->waiter = PyObject_CallMethodNoArgs(loop, st->str_create_future);
    if (self->waiter == NULL) {
        Py_DECREF(loop);
        return NULL;
    }
    if (self->timeout != Py_None) {
        PyObject *stack[3] = {loop, self->timeout, (PyObject *)self};
        self->timer = PyObject_VectorcallMethod(
            st->str_call_later, stack, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
            NULL);
        if (self->timer == NULL) {
            Py_DECREF(loop);
            return NULL;
        }
    }
    Py_DECREF(loop);
    self->counter = n;
    /* 3.14+: cur_task = current_task() */
    if (fw_graph_waiter(st, NULL, &self->graph_waiter) < 0) {
        return NULL;
    }

    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyList_GET_ITEM(self->items, i);
        if (fw_add_done_callback(st, f, (PyObject *)self) < 0 ||
            fw_graph_add(st, f, self->graph_waiter) < 0) {
            /* As in the stdlib, the callbacks (and edges) already added
             * stay. */
            return NULL;
        }
    }
    self->waiting = 1;
    return Py_NewRef(self->waiter);
}

/* The `finally` of _wait() and its result. */
static PyObject *
wait_finish(WaitState *self, PyObject *exc, PyObject **result)
{
    fw_state *st = self->st;
    int ok = 0;
    if (self->timer != NULL) {
        PyObject *r = PyObject_CallMethodNoArgs(self->timer, st->str_cancel);
        ok = r == NULL ? -1 : 0;
        Py_XDECREF(r);
    }
    if (ok == 0 && self->waiting) {
        self->waiting = 0;
        Py_ssize_t n = PyList_GET_SIZE(self->items);
        for (Py_ssize_t i = 0; i < n && ok == 0; i++) {
            PyObject *f = PyList_GET_ITEM(self->items, i);
            ok = fw_remove_done_callback(st, f, (PyObject *)self);
            if (ok == 0) {
                ok = fw_graph_discard(st, f, self->graph_waiter);
            }
        }
    }
    if (ok < 0) {
        if (exc != NULL) {
            /* An error in `finally` replaces the one in flight. */
            PyObject *new_exc = fw_err_fetch();
            PyException_SetContext(new_exc, exc);
            fw_err_restore(new_exc);
        }
        return NULL;
    }
    if (exc != NULL) {
        fw_err_restore(exc);
        return NULL;
    }

    PyObject *done = PySet_New(NULL);
    PyObject *pending = PySet_New(NULL);
    if (done == NULL || pending == NULL) {
        goto fail;
    }
    Py_ssize_t n = PyList_GET_SIZE(self->items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyList_GET_ITEM(self->items, i);
        int is_done = fw_fut_bool(st, f, FW_DONE);
        if (is_done < 0 || PySet_Add(is_done ? done : pending, f) < 0) {
            goto fail;
        }
    }
    *result = PyTuple_Pack(2, done, pending);
fail:
    Py_XDECREF(done);
    Py_XDECREF(pending);
    return NULL;
}

static PyObject *
wait_step(PyObject *op, PyObject *exc, PyObject **result)
{
    WaitState *self = Wait_CAST(op);
    if (self->waiter == NULL) {
        assert(exc == NULL);
        PyObject *waiter = wait_start(self);
        if (waiter == NULL) {
            /* The stdlib's frames go with the exception; what its
             * _on_completion closure and timer keep (the waiter, the
             * timer, the counter) is all that callbacks already scheduled
             * may still hold.  Drop the futures: nothing may keep them
             * alive longer than asyncio's frames do (a timer or a
             * callback of an earlier future would until it ran, and a
             * failed future's "never retrieved" report with it). */
            Py_CLEAR(self->items);
            Py_CLEAR(self->fs);
            Py_CLEAR(self->timeout);
        }
        return waiter;
    }
    return wait_finish(self, exc, result);
}

static const fw_coro_def wait_coro_def = {"wait", wait_step};

static int
wait_state_traverse(PyObject *op, visitproc visit, void *arg)
{
    WaitState *self = Wait_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->fs);
    Py_VISIT(self->items);
    Py_VISIT(self->timeout);
    Py_VISIT(self->return_when);
    Py_VISIT(self->waiter);
    Py_VISIT(self->timer);
    Py_VISIT(self->graph_waiter);
    return 0;
}

static int
wait_state_clear(PyObject *op)
{
    WaitState *self = Wait_CAST(op);
    /* The list first: the set then drops the last references in its own
     * order, as the stdlib's `fs` does (which decides, e.g., the order of
     * "exception was never retrieved" reports). */
    Py_CLEAR(self->items);
    Py_CLEAR(self->fs);
    Py_CLEAR(self->timeout);
    Py_CLEAR(self->return_when);
    Py_CLEAR(self->waiter);
    Py_CLEAR(self->timer);
    Py_CLEAR(self->graph_waiter);
    return 0;
}


/* Read like the stdlib's closure where a future's repr lists callbacks. */
static PyGetSetDef wait_state_getset[] = {
    {"__qualname__", fw_get_closure_text, NULL, NULL,
     "_wait.<locals>._on_completion"},
    {"__name__", fw_get_closure_text, NULL, NULL, "_on_completion"},
    {NULL},
};

static PyMemberDef wait_state_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(WaitState, vectorcall),
     Py_READONLY},
    {NULL},
};

static PyType_Slot wait_state_slots[] = {
    {Py_tp_doc, (void *)"State of one fastwait.wait() call (internal)."},
    {Py_tp_traverse, wait_state_traverse},
    {Py_tp_clear, wait_state_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, wait_state_members},
    {Py_tp_getset, wait_state_getset},
    {0, NULL},
};

static PyType_Spec wait_state_spec = {
    .name = "fastwait._fastwait._WaitState",
    .basicsize = sizeof(WaitState),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = wait_state_slots,
};

PyDoc_STRVAR(
    wait_doc,
    "wait(fs, *, timeout=None, return_when='ALL_COMPLETED')\n--\n\n"
    "Wait for the Futures or Tasks given by fs to complete.\n"
    "\n"
    "A drop-in replacement for asyncio.wait(): a coroutine returning two\n"
    "sets of futures, (done, pending).  return_when is FIRST_COMPLETED,\n"
    "FIRST_EXCEPTION or ALL_COMPLETED; a timeout returns what is done by\n"
    "then, without raising and without cancelling anything.");

static PyObject *
wait(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
     PyObject *kwnames)
{
    fw_state *st = fw_get_state(module);
    PyObject *fs = nargs == 1 ? args[0] : NULL;
    PyObject *timeout = Py_None;
    PyObject *return_when = st->ALL_COMPLETED;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    int ok = nargs <= 1;
    for (Py_ssize_t i = 0; i < nkw && ok; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        PyObject *value = args[nargs + i];
        if (PyUnicode_CompareWithASCIIString(key, "fs") == 0 && fs == NULL) {
            fs = value;
        }
        else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
            timeout = value;
        }
        else if (PyUnicode_CompareWithASCIIString(key, "return_when") == 0) {
            return_when = value;
        }
        else {
            ok = 0;
        }
    }
    if (!ok || fs == NULL) {
        return fw_signature_error(st, "wait", NULL, args, nargs, kwnames);
    }
    WaitState *state = PyObject_GC_New(WaitState, st->WaitStateType);
    if (state == NULL) {
        return NULL;
    }
    state->vectorcall = wait_state_vectorcall;
    state->st = st;
    state->fs = Py_NewRef(fs);
    state->items = NULL;
    state->timeout = Py_NewRef(timeout);
    state->return_when = Py_NewRef(return_when);
    state->waiter = NULL;
    state->timer = NULL;
    state->graph_waiter = NULL;
    state->counter = 0;
    state->first_completed = 0;
    state->first_exception = 0;
    state->waiting = 0;
    PyObject_GC_Track(state);
    PyObject *coro = fw_coro_new(st, &wait_coro_def, (PyObject *)state);
    Py_DECREF(state);
    return coro;
}

static PyMethodDef wait_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))wait, METH_FASTCALL | METH_KEYWORDS,
     wait_doc},
    {NULL},
};

int
fw_wait_init(PyObject *module, fw_state *st)
{
    st->WaitStateType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &wait_state_spec, NULL);
    if (st->WaitStateType == NULL) {
        return -1;
    }
    return PyModule_AddFunctions(module, wait_methods);
}

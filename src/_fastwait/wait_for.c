/* wait_for(): asyncio.tasks.wait_for in C, in the running version's form.
 *
 * 3.12+: the awaitable runs in the caller's task inside a timeout scope
 *   (`async with timeout(t): return await fut`), with our native Timeout
 *   and its shared loop timer.
 * 3.11: the awaitable runs in a task of its own and the caller waits on a
 *   waiter future released by the task's completion or by its deadline (on
 *   the shared loop timer); on a timeout or a cancellation the task is
 *   cancelled and waited for.
 * Both: `timeout <= 0` cancels the awaitable's future and waits for it
 *   (`_cancel_and_wait`, the stdlib's own logic: a rare path).
 *
 * The stdlib's wait_for is an `async def`: argument binding happens at the
 * call, everything else when the coroutine first runs.
 */
#include "state.h"

enum {
    P_START,
    P_PLAIN,          /* await fut, nothing around it (3.11, no timeout) */
    P_SCOPE,          /* await fut inside the Timeout (3.12+) */
    P_ZERO_CANCEL,    /* await _cancel_and_wait(fut), then fut's outcome;
                         a cancellation becomes TimeoutError */
    P_WAIT,           /* 3.11: await waiter */
    P_CANCEL_RERAISE, /* 3.11: await _cancel_and_wait(fut), then re-raise
                         the caller's cancellation */
};

typedef struct {
    PyObject_HEAD
    PyObject *fut;     /* the awaitable; its future once there is one */
    PyObject *delay;   /* the timeout argument */
    PyObject *timeout; /* 3.12+: the scope */
    PyObject *waiter;  /* 3.11 */
    PyObject *timer;   /* 3.11: the waiter's TimerHandle */
    PyObject *cb;      /* 3.11: _release_waiter(waiter), on fut and timer */
    PyObject *saved;   /* 3.11: the cancellation to re-raise */
    int phase;
} WaitForState;

#define WF_CAST(op) ((WaitForState *)(op))

/* The exception being raised was raised by a call made, in the Python
 * version, inside an `except` block handling `handled`: chain it as the
 * interpreter does (its __context__ becomes `handled`, replacing what it
 * had, without making a cycle). */
static void
chain_handled(PyObject *handled)
{
    if (handled == NULL) {
        return;
    }
    PyObject *exc = fw_err_fetch();
    if (exc == NULL) {
        return;
    }
    if (exc != handled) {
        PyObject *o = Py_NewRef(handled);
        PyObject *ctx;
        while ((ctx = PyException_GetContext(o)) != NULL) {
            if (ctx == exc) {
                PyException_SetContext(o, NULL);
                Py_DECREF(ctx);
                break;
            }
            Py_SETREF(o, ctx);
        }
        Py_DECREF(o);
        PyException_SetContext(exc, Py_NewRef(handled));
    }
    fw_err_restore(exc);
}

/* An exception that came out of an awaited coroutine while `context` was
 * being handled: in the Python version it got `context` as __context__
 * where it was raised, unless it had one already. */
static void
chain_context(PyObject *context)
{
    if (context == NULL) {
        return;
    }
    PyObject *exc = fw_err_fetch();
    if (exc == NULL) {
        return;
    }
    if (exc != context) {
        PyObject *old = PyException_GetContext(exc);
        if (old == NULL) {
            PyException_SetContext(exc, Py_NewRef(context));
        }
        Py_XDECREF(old);
    }
    fw_err_restore(exc);
}

/* return fut.result(), except that a CancelledError becomes
 * `TimeoutError() from` it. */
static PyObject *
result_or_timeout(fw_state *st, PyObject *fut, PyObject **result)
{
    *result = fw_fut_call(st, fut, FW_RESULT);
    if (*result != NULL ||
        !PyErr_ExceptionMatches(st->CancelledError)) {
        return NULL;
    }
    PyObject *cancelled = fw_err_fetch();
    PyObject *te = PyObject_CallNoArgs(PyExc_TimeoutError);
    if (te != NULL) {
        PyException_SetContext(te, Py_NewRef(cancelled));
        PyException_SetCause(te, Py_NewRef(cancelled));
        PyErr_SetObject(PyExc_TimeoutError, te);
        Py_DECREF(te);
    }
    Py_DECREF(cancelled);
    return NULL;
}

static int
cancel_timer(fw_state *st, WaitForState *s)
{
    if (s->timer == NULL) {
        return 0;
    }
    int r = fw_release_timer_cancel(st, s->timer);
    Py_CLEAR(s->timer);
    return r;
}

/* `timeout <= 0` (None excluded): -1 error, 0/1. */
static int
non_positive(fw_state *st, PyObject *delay)
{
    if (PyFloat_CheckExact(delay)) {
        return PyFloat_AS_DOUBLE(delay) <= 0.0;
    }
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL) {
        return -1;
    }
    int r = PyObject_RichCompareBool(delay, zero, Py_LE);
    Py_DECREF(zero);
    return r;
}

/* The `timeout <= 0` path: ensure_future, done shortcut, or cancel and
 * wait. */
static PyObject *
start_zero(fw_state *st, WaitForState *s, PyObject *loop, PyObject **result)
{
    PyObject *fut = fw_ensure_future(st, s->fut, loop);
    if (fut == NULL) {
        return NULL;
    }
    Py_SETREF(s->fut, fut);
    int done = fw_fut_bool(st, fut, FW_DONE);
    if (done < 0) {
        return NULL;
    }
    if (done) {
        *result = fw_fut_call(st, fut, FW_RESULT);
        return NULL;
    }
    s->phase = P_ZERO_CANCEL;
    return PyObject_CallOneArg(st->cancel_and_wait, fut);
}

static PyObject *
start_312(fw_state *st, WaitForState *s, PyObject **result)
{
    if (s->delay != Py_None) {
        int le = non_positive(st, s->delay);
        if (le < 0) {
            return NULL;
        }
        if (le) {
            return start_zero(st, s, NULL, result);
        }
    }
    s->timeout = fw_timeout_for_delay(st, s->delay);
    if (s->timeout == NULL || fw_timeout_enter(st, s->timeout) < 0) {
        return NULL;
    }
    s->phase = P_SCOPE;
    return Py_NewRef(s->fut);
}

static PyObject *
start_311(fw_state *st, WaitForState *s, PyObject **result)
{
    PyObject *loop = PyObject_CallNoArgs(st->get_running_loop);
    if (loop == NULL) {
        return NULL;
    }
    PyObject *aw = NULL;
    if (s->delay == Py_None) {
        s->phase = P_PLAIN;
        aw = Py_NewRef(s->fut);
        goto done;
    }
    int le = non_positive(st, s->delay);
    if (le != 0) {
        if (le > 0) {
            aw = start_zero(st, s, loop, result);
        }
        goto done;
    }
    s->waiter = PyObject_CallMethodNoArgs(loop, st->str_create_future);
    if (s->waiter == NULL) {
        goto done;
    }
    s->timer = fw_release_timer(st, loop, s->delay, s->waiter);
    if (s->timer == NULL) {
        goto done;
    }
    s->cb = fw_release_waiter_new(st, s->waiter);
    if (s->cb == NULL) {
        goto done;
    }
    PyObject *fut = fw_ensure_future(st, s->fut, loop);
    if (fut == NULL) {
        goto done;
    }
    Py_SETREF(s->fut, fut);
    if (fw_add_done_callback(st, fut, s->cb) < 0) {
        goto done;
    }
    s->phase = P_WAIT;
    aw = Py_NewRef(s->waiter);
done:
    Py_DECREF(loop);
    return aw;
}

/* 3.11, after `await waiter` (exc: how it ended, owned or NULL). */
static PyObject *
after_wait_311(fw_state *st, WaitForState *s, PyObject *exc,
               PyObject **result)
{
    if (exc != NULL) {
        int cancel = PyObject_IsInstance(exc, st->CancelledError);
        if (cancel <= 0) {
            (void)cancel_timer(st, s);
            fw_err_restore(exc);
            return NULL;
        }
    }
    int done = fw_fut_bool(st, s->fut, FW_DONE);
    if (done != 0) {
        if (done > 0) {
            *result = fw_fut_call(st, s->fut, FW_RESULT);
        }
        if (*result == NULL) {
            chain_handled(exc);
        }
        Py_XDECREF(exc);
        PyObject *err = *result == NULL ? fw_err_fetch() : NULL;
        (void)cancel_timer(st, s);
        if (err != NULL) {
            fw_err_restore(err);
        }
        return NULL;
    }
    if (fw_remove_done_callback(st, s->fut, s->cb) < 0) {
        chain_handled(exc);
        Py_XDECREF(exc);
        PyObject *err = fw_err_fetch();
        (void)cancel_timer(st, s);
        fw_err_restore(err);
        return NULL;
    }
    if (exc != NULL) {
        s->saved = exc;
        s->phase = P_CANCEL_RERAISE;
    }
    else {
        s->phase = P_ZERO_CANCEL;
    }
    return PyObject_CallOneArg(st->cancel_and_wait, s->fut);
}

static PyObject *
wait_for_step(PyObject *state, PyObject *value, PyObject *exc,
              PyObject **result)
{
    WaitForState *s = WF_CAST(state);
    fw_state *st = fw_state_from_type(Py_TYPE(state));
    PyObject *aw = NULL;
    switch (s->phase) {
    case P_START:
        assert(value == NULL);
        if (exc != NULL) {
            fw_err_restore(exc);
            return NULL;
        }
        return st->wait_for_own_task ? start_311(st, s, result)
                                     : start_312(st, s, result);
    case P_PLAIN:
        break;
    case P_SCOPE:
        if (fw_timeout_exit(st, s->timeout, exc) < 0) {
            chain_handled(exc);
            Py_XDECREF(exc);
            Py_XDECREF(value);
            return NULL;
        }
        break;
    case P_ZERO_CANCEL:
        Py_XDECREF(value);
        if (exc == NULL) {
            aw = result_or_timeout(st, s->fut, result);
        }
        if (s->timer != NULL) {
            PyObject *err = exc != NULL ? exc : fw_err_fetch();
            (void)cancel_timer(st, s);
            if (err != NULL) {
                fw_err_restore(err);
            }
            return aw;
        }
        if (exc != NULL) {
            fw_err_restore(exc);
        }
        return aw;
    case P_WAIT:
        Py_XDECREF(value);
        return after_wait_311(st, s, exc, result);
    case P_CANCEL_RERAISE:
        Py_XDECREF(value);
        (void)cancel_timer(st, s);
        if (exc != NULL) {
            fw_err_restore(exc);
            chain_context(s->saved);
        }
        else {
            fw_err_restore(Py_NewRef(s->saved));
        }
        return NULL;
    }
    /* `return await fut` */
    if (exc != NULL) {
        fw_err_restore(exc);
        return NULL;
    }
    *result = value;
    return NULL;
}

static const fw_coro_def wait_for_def = {"wait_for", NULL, wait_for_step};

static int
wf_traverse(PyObject *op, visitproc visit, void *arg)
{
    WaitForState *s = WF_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(s->fut);
    Py_VISIT(s->delay);
    Py_VISIT(s->timeout);
    Py_VISIT(s->waiter);
    Py_VISIT(s->timer);
    Py_VISIT(s->cb);
    Py_VISIT(s->saved);
    return 0;
}

static int
wf_clear(PyObject *op)
{
    WaitForState *s = WF_CAST(op);
    Py_CLEAR(s->fut);
    Py_CLEAR(s->delay);
    Py_CLEAR(s->timeout);
    Py_CLEAR(s->waiter);
    Py_CLEAR(s->timer);
    Py_CLEAR(s->cb);
    Py_CLEAR(s->saved);
    return 0;
}

static PyType_Slot wf_slots[] = {
    {Py_tp_doc, (void *)"State of one fastwait.wait_for() call (internal)."},
    {Py_tp_traverse, wf_traverse},
    {Py_tp_clear, wf_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {0, NULL},
};

static PyType_Spec wf_spec = {
    .name = "fastwait._fastwait._WaitForState",
    .basicsize = sizeof(WaitForState),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = wf_slots,
};

static PyObject *
wait_for_new(fw_state *st, PyObject *fut, PyObject *delay)
{
    WaitForState *s = PyObject_GC_New(WaitForState, st->WaitForStateType);
    if (s == NULL) {
        return NULL;
    }
    s->fut = Py_NewRef(fut);
    s->delay = Py_NewRef(delay);
    s->timeout = s->waiter = s->timer = s->cb = s->saved = NULL;
    s->phase = P_START;
    PyObject_GC_Track(s);
    PyObject *coro = fw_coro_new(st, &wait_for_def, (PyObject *)s);
    Py_DECREF(s);
    return coro;
}

static PyObject *
fw_wait_for(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    fw_state *st = fw_get_state(module);
    if (nargs == 2 && kwnames == NULL) {
        return wait_for_new(st, args[0], args[1]);
    }
    PyObject *bound = fw_bind(st, "wait_for", NULL, args, nargs, kwnames);
    if (bound == NULL) {
        return NULL;
    }
    PyObject *coro = wait_for_new(st, PyTuple_GET_ITEM(bound, 0),
                                  PyTuple_GET_ITEM(bound, 1));
    Py_DECREF(bound);
    return coro;
}

PyDoc_STRVAR(wait_for_doc,
"wait_for($module, /, fut, timeout)\n--\n\n"
"Wait for the single Future or coroutine to complete, with timeout.\n\n"
"Like asyncio.wait_for() of the running Python: returns the result of\n"
"the awaitable; when a timeout occurs, it cancels the awaitable and\n"
"raises TimeoutError.  To avoid the cancellation, wrap it in shield().\n"
"If the wait is cancelled, the awaitable is cancelled too.\n\n"
"This function is a coroutine.");

static PyMethodDef wait_for_functions[] = {
    {"wait_for", (PyCFunction)(void (*)(void))fw_wait_for,
     METH_FASTCALL | METH_KEYWORDS, wait_for_doc},
    {NULL},
};

/* 3.14+: tasks._cancel_and_wait records that the current task awaits the
 * cancelled future in the call graph (gh-157058: awaiting the waiter
 * leaves no edge on fut), at the same points as the stdlib.  Defined next
 * to module.c's earlier form, whose _release_waiter it shares. */
static const char cancel_and_wait_314_src[] =
    "from asyncio import futures as _futures, tasks as _tasks\n"
    "async def _cancel_and_wait_314(fut):\n"
    "    loop = _events.get_running_loop()\n"
    "    waiter = loop.create_future()\n"
    "    cb = _functools.partial(_release_waiter, waiter)\n"
    "    fut.add_done_callback(cb)\n"
    "    cur_task = _tasks.current_task()\n"
    "    _futures.future_add_to_awaited_by(fut, cur_task)\n"
    "    try:\n"
    "        fut.cancel()\n"
    "        await waiter\n"
    "    finally:\n"
    "        fut.remove_done_callback(cb)\n"
    "        _futures.future_discard_from_awaited_by(fut, cur_task)\n"
    "_cancel_and_wait_314.__name__ = '_cancel_and_wait'\n"
    "_cancel_and_wait_314.__qualname__ = '_cancel_and_wait'\n";

int
fw_wait_for_init(PyObject *module, fw_state *st)
{
    st->WaitForStateType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &wf_spec, NULL);
    if (st->WaitForStateType == NULL) {
        return -1;
    }
    if (Py_Version >= 0x030E0000) {
        PyObject *ran = PyRun_String(cancel_and_wait_314_src, Py_file_input,
                                     st->signatures, st->signatures);
        if (ran == NULL) {
            return -1;
        }
        Py_DECREF(ran);
        PyObject *f = PyDict_GetItemString(st->signatures,
                                           "_cancel_and_wait_314");
        if (f == NULL) {
            PyErr_SetString(PyExc_SystemError, "no _cancel_and_wait_314");
            return -1;
        }
        Py_XSETREF(st->cancel_and_wait, Py_NewRef(f));
    }
    return PyModule_AddFunctions(module, wait_for_functions);
}

/* as_completed(fs, *, timeout=None)
 *
 * asyncio.as_completed of the running interpreter:
 *   3.11/3.12 -- a generator: nothing happens before the first next();
 *                then it yields one `_wait_for_one()` coroutine per unique
 *                awaitable.  It answers send/throw/close like one.
 *   3.13      -- an _AsCompletedIterator, set up at the call: a plain
 *                iterator of `_wait_for_one()` coroutines that resolve to
 *                the results, and an async iterator of the original futures.
 * The async iteration of 3.13 is offered on every version (strictly
 * additive on 3.11/3.12, where the stdlib's generator has none).
 *
 * The internals are the stdlib's: a done-callback per future that moves it
 * to a FIFO (asyncio.Queue's semantics: waiting consumers are futures, woken
 * in order), a TimerHandle whose expiry queues one None sentinel per
 * future not yet done.
 */
#include "state.h"

typedef struct {
    PyObject_HEAD
    fw_state *st;
    PyObject *fs;       /* the argument, until set up */
    PyObject *timeout;
    PyObject *loop;
    PyObject *todo;     /* set of futures not yet done */
    PyObject *done;     /* list: completed futures and None sentinels */
    Py_ssize_t done_head;
    PyObject *getters;  /* list of futures of waiting consumers */
    PyObject *timer;
    PyObject *weakreflist;
    PyObject *graph_waiter; /* 3.14+: self._cur_task, for call-graph edges */
    Py_ssize_t todo_left; /* items still to hand out */
    char lazy;            /* 3.11/3.12: set up at the first next() */
    char started;
    char finished;        /* generator closed or exhausted */
} AsCompleted;

#define AC_CAST(op) ((AsCompleted *)(op))

/* ---- the queue (asyncio.Queue's put_nowait/get semantics) ---------- */

static int
ac_wakeup_next(AsCompleted *self)
{
    fw_state *st = self->st;
    while (PyList_GET_SIZE(self->getters) > 0) {
        PyObject *w = Py_NewRef(PyList_GET_ITEM(self->getters, 0));
        if (PyList_SetSlice(self->getters, 0, 1, NULL) < 0) {
            Py_DECREF(w);
            return -1;
        }
        int woken = fw_release_waiter(st, w);
        Py_DECREF(w);
        if (woken != 0) {
            return woken < 0 ? -1 : 0;
        }
    }
    return 0;
}

static int
ac_put(AsCompleted *self, PyObject *item)
{
    if (PyList_Append(self->done, item) < 0) {
        return -1;
    }
    return ac_wakeup_next(self);
}

static Py_ssize_t
ac_qsize(AsCompleted *self)
{
    return PyList_GET_SIZE(self->done) - self->done_head;
}

/* New reference; the queue must not be empty. */
static PyObject *
ac_get_nowait(AsCompleted *self)
{
    PyObject *item = PyList_GET_ITEM(self->done, self->done_head);
    PyList_SET_ITEM(self->done, self->done_head, Py_NewRef(Py_None));
    self->done_head++;
    if (self->done_head == PyList_GET_SIZE(self->done)) {
        (void)PyList_SetSlice(self->done, 0, self->done_head, NULL);
        self->done_head = 0;
    }
    return item;
}

/* ---- callbacks ------------------------------------------------------ */

static int
ac_cancel_timer(AsCompleted *self)
{
    if (self->timer == NULL) {
        return 0;
    }
    PyObject *r = PyObject_CallMethodNoArgs(self->timer, self->st->str_cancel);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* _on_completion(f) / _handle_completion(f) */
static PyObject *
ac_on_completion(PyObject *op, PyObject *f)
{
    AsCompleted *self = AC_CAST(op);
    if (self->todo == NULL || PySet_GET_SIZE(self->todo) == 0) {
        Py_RETURN_NONE; /* the timeout was here first */
    }
    int r = PySet_Discard(self->todo, f);
    if (r <= 0) {
        if (r == 0) {
            PyErr_SetObject(PyExc_KeyError, f);
        }
        return NULL;
    }
    if (fw_graph_discard(self->st, f, self->graph_waiter) < 0 ||
        ac_put(self, f) < 0) {
        return NULL;
    }
    if (PySet_GET_SIZE(self->todo) == 0 && ac_cancel_timer(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef ac_on_completion_def = {
    "_on_completion", ac_on_completion, METH_O, NULL,
};

static PyObject *
ac_callback(AsCompleted *self)
{
    return PyCMethod_New(&ac_on_completion_def, (PyObject *)self, NULL, NULL);
}

/* _on_timeout() / _handle_timeout() */
static PyObject *
ac_on_timeout(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    AsCompleted *self = AC_CAST(op);
    fw_state *st = self->st;
    PyObject *snapshot = PySequence_List(self->todo);
    PyObject *cb = ac_callback(self);
    if (snapshot == NULL || cb == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(snapshot); i++) {
        PyObject *f = PyList_GET_ITEM(snapshot, i);
        if (fw_remove_done_callback(st, f, cb) < 0 ||
            fw_graph_discard(st, f, self->graph_waiter) < 0 ||
            ac_put(self, Py_None) < 0) {
            goto fail;
        }
    }
    PySet_Clear(self->todo);
    Py_DECREF(snapshot);
    Py_DECREF(cb);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(snapshot);
    Py_XDECREF(cb);
    return NULL;
}

static PyMethodDef ac_on_timeout_def = {
    "_on_timeout", ac_on_timeout, METH_NOARGS, NULL,
};

/* ---- set-up --------------------------------------------------------- */

/* ensure_future(f, loop=loop): a new reference. */
static PyObject *
ac_ensure_future(fw_state *st, PyObject *f, PyObject *loop)
{
    int isfut = fw_isfuture(st, f);
    if (isfut < 0) {
        return NULL;
    }
    if (isfut) {
        PyObject *fut_loop = fw_get_loop(st, f);
        if (fut_loop == NULL) {
            return NULL;
        }
        Py_DECREF(fut_loop);
        if (fut_loop != loop) {
            PyErr_SetString(PyExc_ValueError,
                            "The future belongs to a different loop than "
                            "the one specified as the loop argument");
            return NULL;
        }
        return Py_NewRef(f);
    }
    if (PyCoro_CheckExact(f)) {
        PyObject *task = PyObject_CallMethodOneArg(loop, st->str_create_task,
                                                   f);
        if (task == NULL) {
            fw_close_unscheduled(st, f);
        }
        return task;
    }
    PyObject *stack[2] = {f, loop};
    return PyObject_Vectorcall(st->ensure_future, stack, 1, st->kw_loop);
}

static int
ac_setup(AsCompleted *self)
{
    fw_state *st = self->st;
    PyObject *fs = self->fs;
    self->started = 1;
    if (self->lazy) {
        /* if futures.isfuture(fs) or coroutines.iscoroutine(fs): ... */
        int bad = fw_is_future_or_coroutine(st, fs);
        if (bad != 0) {
            if (bad > 0) {
                fw_type_error_naming_type(
                    "expect an iterable of futures, not %U", fs);
            }
            return -1;
        }
    }
    if ((self->done = PyList_New(0)) == NULL ||
        (self->getters = PyList_New(0)) == NULL) {
        return -1;
    }
    self->loop = PyObject_CallNoArgs(st->get_event_loop);
    if (self->loop == NULL) {
        return -1;
    }
    /* 3.14+: self._cur_task = current_task() (no running loop: the
     * RuntimeError) */
    if (fw_graph_waiter(st, NULL, &self->graph_waiter) < 0) {
        return -1;
    }
    /* todo = {ensure_future(f, loop=loop) for f in set(fs)} */
    PyObject *uniq = PySet_New(fs);
    if (uniq == NULL) {
        return -1;
    }
    PyObject *items = PySequence_List(uniq);
    Py_DECREF(uniq);
    if (items == NULL) {
        return -1;
    }
    self->todo = PySet_New(NULL);
    if (self->todo == NULL) {
        Py_DECREF(items);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *fut = ac_ensure_future(st, PyList_GET_ITEM(items, i),
                                         self->loop);
        int r = fut == NULL ? -1 : PySet_Add(self->todo, fut);
        Py_XDECREF(fut);
        if (r < 0) {
            Py_DECREF(items);
            return -1;
        }
    }
    Py_DECREF(items);
    Py_CLEAR(self->fs);

    PyObject *order = PySequence_List(self->todo);
    if (order == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(order); i++) {
        PyObject *cb = ac_callback(self);
        PyObject *f = PyList_GET_ITEM(order, i);
        int r = cb == NULL ? -1 : fw_add_done_callback(st, f, cb);
        Py_XDECREF(cb);
        if (r == 0) {
            r = fw_graph_add(st, f, self->graph_waiter);
        }
        if (r < 0) {
            Py_DECREF(order);
            return -1;
        }
    }
    Py_DECREF(order);
    self->todo_left = PySet_GET_SIZE(self->todo);
    if (self->todo_left > 0 && self->timeout != Py_None) {
        PyObject *cb = PyCMethod_New(&ac_on_timeout_def, (PyObject *)self,
                                     NULL, NULL);
        if (cb == NULL) {
            return -1;
        }
        PyObject *stack[3] = {self->loop, self->timeout, cb};
        self->timer = PyObject_VectorcallMethod(
            st->str_call_later, stack, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
            NULL);
        Py_DECREF(cb);
        if (self->timer == NULL) {
            return -1;
        }
    }
    return 0;
}

/* ---- _wait_for_one() and __anext__() --------------------------------- */

enum { WAIT_RESOLVE, WAIT_FUTURE, WAIT_ANEXT };

typedef struct {
    PyObject_HEAD
    AsCompleted *ac;
    PyObject *getter;
    int kind;
    int started;
} WaitOne;

#define WaitOne_CAST(op) ((WaitOne *)(op))

static PyObject *
wait_one_step(PyObject *op, PyObject *exc, PyObject **result)
{
    WaitOne *self = WaitOne_CAST(op);
    AsCompleted *ac = self->ac;
    fw_state *st = ac->st;
    if (!self->started) {
        self->started = 1;
        if (self->kind == WAIT_ANEXT) {
            /* async def __anext__(self):
             *     if not self._todo_left: raise StopAsyncIteration
             *     self._todo_left -= 1 ... */
            if (!ac->started && !ac->finished && ac_setup(ac) < 0) {
                ac->finished = 1;
                return NULL;
            }
            if (ac->finished || ac->todo_left <= 0) {
                PyErr_SetNone(PyExc_StopAsyncIteration);
                return NULL;
            }
            ac->todo_left--;
        }
    }
    if (self->getter != NULL) {
        PyObject *getter = self->getter;
        self->getter = NULL;
        if (exc != NULL) {
            /* Queue.get(): the getter is cancelled and removed; a wake-up
             * it got passes on. */
            PyObject *r = PyObject_CallMethodNoArgs(getter, st->str_cancel);
            Py_XDECREF(r);
            if (r == NULL) {
                PyErr_Clear();
            }
            Py_ssize_t n = PyList_GET_SIZE(ac->getters);
            for (Py_ssize_t i = 0; i < n; i++) {
                if (PyList_GET_ITEM(ac->getters, i) == getter) {
                    (void)PyList_SetSlice(ac->getters, i, i + 1, NULL);
                    break;
                }
            }
            int cancelled = fw_fut_bool(st, getter, FW_CANCELLED);
            if (ac_qsize(ac) > 0 && cancelled == 0) {
                if (ac_wakeup_next(ac) < 0) {
                    PyErr_Clear();
                }
            }
            PyErr_Clear();
            Py_DECREF(getter);
            if (st->as_completed_requeue) {
                /* 3.14+: except: self._todo_left += 1; raise */
                ac->todo_left++;
            }
            fw_err_restore(exc);
            return NULL;
        }
        Py_DECREF(getter);
    }
    if (ac_qsize(ac) == 0) {
        PyObject *loop = PyObject_CallNoArgs(st->get_running_loop_or_none);
        if (loop == NULL) {
            goto get_failed;
        }
        if (loop != ac->loop) {
            PyErr_Format(PyExc_RuntimeError,
                         "<Queue maxsize=0> is bound to a different event "
                         "loop");
            Py_DECREF(loop);
            goto get_failed;
        }
        PyObject *getter = PyObject_CallMethodNoArgs(loop,
                                                     st->str_create_future);
        Py_DECREF(loop);
        if (getter == NULL) {
            goto get_failed;
        }
        if (PyList_Append(ac->getters, getter) < 0) {
            Py_DECREF(getter);
            goto get_failed;
        }
        self->getter = Py_NewRef(getter);
        return getter;
    }
    PyObject *f = ac_get_nowait(ac);
    if (f == Py_None) {
        Py_DECREF(f);
        PyErr_SetNone(PyExc_TimeoutError);
        return NULL;
    }
    if (self->kind == WAIT_RESOLVE) {
        *result = fw_fut_call(st, f, FW_RESULT);
        Py_DECREF(f);
        return NULL;
    }
    *result = f;
    return NULL;
get_failed:
    if (st->as_completed_requeue) {
        ac->todo_left++; /* 3.14+: see above */
    }
    return NULL;
}

static int
wait_one_traverse(PyObject *op, visitproc visit, void *arg)
{
    WaitOne *self = WaitOne_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->ac);
    Py_VISIT(self->getter);
    return 0;
}

static int
wait_one_clear(PyObject *op)
{
    WaitOne *self = WaitOne_CAST(op);
    Py_CLEAR(self->ac);
    Py_CLEAR(self->getter);
    return 0;
}


static PyType_Slot wait_one_slots[] = {
    {Py_tp_traverse, wait_one_traverse},
    {Py_tp_clear, wait_one_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {0, NULL},
};

static PyType_Spec wait_one_spec = {
    .name = "fastwait._fastwait._AsCompletedWait",
    .basicsize = sizeof(WaitOne),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = wait_one_slots,
};

/* Names as the stdlib's coroutines have them, per version. */
static const fw_coro_def wait_one_def_311 = {
    "as_completed.<locals>._wait_for_one", wait_one_step};
static const fw_coro_def wait_one_def_313 = {
    "_AsCompletedIterator._wait_for_one", wait_one_step};
static const fw_coro_def anext_def = {"_AsCompletedIterator.__anext__",
                                      wait_one_step};

static PyObject *
ac_make_wait(AsCompleted *self, int kind)
{
    fw_state *st = self->st;
    WaitOne *state = PyObject_GC_New(WaitOne, st->AsCompletedWaitType);
    if (state == NULL) {
        return NULL;
    }
    state->ac = (AsCompleted *)Py_NewRef(self);
    state->getter = NULL;
    state->kind = kind;
    state->started = 0;
    PyObject_GC_Track(state);
    const fw_coro_def *def = kind == WAIT_ANEXT ? &anext_def
                             : self->lazy      ? &wait_one_def_311
                                               : &wait_one_def_313;
    PyObject *coro = fw_coro_new(st, def, (PyObject *)state);
    Py_DECREF(state);
    return coro;
}

/* ---- the iterator --------------------------------------------------- */

static PyObject *
ac_iternext(PyObject *op)
{
    AsCompleted *self = AC_CAST(op);
    if (self->finished) {
        return NULL;
    }
    if (!self->started && ac_setup(self) < 0) {
        self->finished = 1;
        return NULL;
    }
    if (self->todo_left <= 0) {
        if (self->lazy) {
            self->finished = 1;
        }
        return NULL;
    }
    self->todo_left--;
    return ac_make_wait(self, WAIT_RESOLVE);
}

static PyObject *
ac_send(PyObject *op, PyObject *value)
{
    AsCompleted *self = AC_CAST(op);
    if (!self->started && !self->finished && value != Py_None) {
        PyErr_SetString(PyExc_TypeError,
                        "can't send non-None value to a just-started "
                        "generator");
        return NULL;
    }
    PyObject *r = ac_iternext(op);
    if (r == NULL && !PyErr_Occurred()) {
        PyErr_SetNone(PyExc_StopIteration);
    }
    return r;
}

static PyObject *
ac_throw(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    AsCompleted *self = AC_CAST(op);
    PyObject *exc = fw_make_thrown(args, nargs);
    if (exc == NULL) {
        return NULL;
    }
    /* The generator has no try block: what is thrown in comes out and
     * finishes it.  Raised inside its frame -- at a yield, or on 3.11 at
     * the start too -- a StopIteration becomes RuntimeError (PEP 479);
     * a finished generator (and, from 3.12, a new one) raises it as is. */
    int in_frame = !self->finished &&
                   (self->started || Py_Version < 0x030C0000);
    self->finished = 1;
    if (in_frame && PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_StopIteration)) {
        PyErr_SetString(PyExc_RuntimeError, "generator raised StopIteration");
        PyObject *rt = fw_err_fetch();
        PyException_SetCause(rt, Py_NewRef(exc));
        PyException_SetContext(rt, exc); /* steals exc */
        fw_err_restore(rt);
        return NULL;
    }
    fw_err_restore(exc);
    return NULL;
}

static PyObject *
ac_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    AC_CAST(op)->finished = 1;
    Py_RETURN_NONE;
}

static PyObject *
ac_aiter(PyObject *op)
{
    return Py_NewRef(op);
}

static PyObject *
ac_anext(PyObject *op)
{
    /* Everything happens when the returned coroutine runs. */
    return ac_make_wait(AC_CAST(op), WAIT_ANEXT);
}

static int
ac_traverse(PyObject *op, visitproc visit, void *arg)
{
    AsCompleted *self = AC_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->fs);
    Py_VISIT(self->timeout);
    Py_VISIT(self->loop);
    Py_VISIT(self->todo);
    Py_VISIT(self->done);
    Py_VISIT(self->getters);
    Py_VISIT(self->timer);
    Py_VISIT(self->graph_waiter);
    return 0;
}

static int
ac_clear(PyObject *op)
{
    AsCompleted *self = AC_CAST(op);
    Py_CLEAR(self->fs);
    Py_CLEAR(self->timeout);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->todo);
    Py_CLEAR(self->done);
    Py_CLEAR(self->getters);
    Py_CLEAR(self->timer);
    Py_CLEAR(self->graph_waiter);
    return 0;
}


static PyObject *
ac_repr(PyObject *op)
{
    return PyUnicode_FromFormat(
        "<asyncio.tasks._AsCompletedIterator object at %p>", op);
}

/* ---- 3.11/3.12: the generator ---------------------------------------
 *
 * The stdlib's generator is not what its done-callbacks and
 * _wait_for_one() coroutines hold on to (they close over the queue and the
 * set of futures), so dropping it frees it.  The generator is therefore a
 * thin object over the AsCompleted that does the work. */

typedef struct {
    PyObject_HEAD
    PyObject *core; /* AsCompleted */
    PyObject *weakreflist;
} AcGen;

#define Gen_CORE(op) (((AcGen *)(op))->core)

static PyObject *
gen_iternext(PyObject *op)
{
    return ac_iternext(Gen_CORE(op));
}

static PyObject *
gen_send(PyObject *op, PyObject *value)
{
    return ac_send(Gen_CORE(op), value);
}

static PyObject *
gen_throw(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    return ac_throw(Gen_CORE(op), args, nargs);
}

static PyObject *
gen_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return ac_close(Gen_CORE(op), NULL);
}

static PyObject *
gen_anext(PyObject *op)
{
    return ac_anext(Gen_CORE(op));
}

static PyObject *
gen_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<generator object as_completed at %p>", op);
}

static int
gen_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(Gen_CORE(op));
    return 0;
}

static int
gen_clear(PyObject *op)
{
    Py_CLEAR(Gen_CORE(op));
    return 0;
}

static PyMemberDef ac_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(AsCompleted, weakreflist),
     Py_READONLY},
    {NULL},
};

PyDoc_STRVAR(ac_doc,
             "What fastwait.as_completed() returns: an iterator of awaitables "
             "that\nresolve to the results in completion order, and an async "
             "iterator of\nthe original futures and tasks as they complete.");

/* 3.11/3.12: the stdlib's is a generator. */
static PyMethodDef gen_methods[] = {
    {"send", gen_send, METH_O,
     "send(arg)\n--\n\nLike next(); a just-started generator only "
     "takes None."},
    {"throw", (PyCFunction)(void (*)(void))gen_throw, METH_FASTCALL,
     "throw(typ[, val[, tb]])\n--\n\nRaise the exception; the generator "
     "is finished."},
    {"close", gen_close, METH_NOARGS,
     "close()\n--\n\nFinish the generator."},
    {NULL},
};

static PyMemberDef gen_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(AcGen, weakreflist),
     Py_READONLY},
    {NULL},
};

static PyType_Slot ac_gen_slots[] = {
    {Py_tp_doc, (void *)ac_doc},
    {Py_tp_repr, gen_repr},
    {Py_tp_traverse, gen_traverse},
    {Py_tp_clear, gen_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_iter, ac_aiter},
    {Py_tp_iternext, gen_iternext},
    {Py_tp_methods, gen_methods},
    {Py_tp_members, gen_members},
    {Py_am_aiter, ac_aiter},
    {Py_am_anext, gen_anext},
    {0, NULL},
};

/* 3.13: the stdlib's is an _AsCompletedIterator. */
static PyType_Slot ac_iter_slots[] = {
    {Py_tp_doc, (void *)ac_doc},
    {Py_tp_repr, ac_repr},
    {Py_tp_traverse, ac_traverse},
    {Py_tp_clear, ac_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_iter, ac_aiter},
    {Py_tp_iternext, ac_iternext},
    {Py_tp_members, ac_members},
    {Py_am_aiter, ac_aiter},
    {Py_am_anext, ac_anext},
    {0, NULL},
};

PyDoc_STRVAR(
    as_completed_doc,
    "as_completed(fs, *, timeout=None)\n--\n\n"
    "Iterate over awaitables in the order they complete.\n"
    "\n"
    "A drop-in replacement for asyncio.as_completed() of the running Python\n"
    "version: plain iteration yields awaitables that return the next result\n"
    "or raise; `async for` yields the original futures and tasks (or the\n"
    "tasks made for coroutines) as they complete, on every version.  A\n"
    "timeout makes what is still pending raise TimeoutError.");

static PyObject *
as_completed(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    fw_state *st = fw_get_state(module);
    PyObject *fs = nargs == 1 ? args[0] : NULL;
    PyObject *timeout = Py_None;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    int ok = nargs <= 1;
    for (Py_ssize_t i = 0; i < nkw && ok; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(key, "fs") == 0 && fs == NULL) {
            fs = args[nargs + i];
        }
        else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
            timeout = args[nargs + i];
        }
        else {
            ok = 0;
        }
    }
    if (!ok || fs == NULL) {
        return fw_signature_error(st, "as_completed", NULL, args, nargs,
                                  kwnames);
    }
    int lazy = !st->as_completed_eager;
    if (!lazy) {
        /* 3.13: if inspect.isawaitable(fs): TypeError */
        PyObject *r = PyObject_CallOneArg(st->isawaitable, fs);
        int bad = r == NULL ? -1 : PyObject_IsTrue(r);
        Py_XDECREF(r);
        if (bad != 0) {
            if (bad > 0) {
                fw_type_error_naming_type(
                    "expects an iterable of awaitables, not %U", fs);
            }
            return NULL;
        }
    }
    AsCompleted *self = PyObject_GC_New(AsCompleted, st->AsCompletedIterType);
    if (self == NULL) {
        return NULL;
    }
    self->st = st;
    self->fs = Py_NewRef(fs);
    self->timeout = Py_NewRef(timeout);
    self->loop = NULL;
    self->todo = NULL;
    self->done = NULL;
    self->done_head = 0;
    self->getters = NULL;
    self->timer = NULL;
    self->weakreflist = NULL;
    self->graph_waiter = NULL;
    self->todo_left = 0;
    self->lazy = (char)lazy;
    self->started = 0;
    self->finished = 0;
    PyObject_GC_Track(self);
    if (!lazy) {
        if (ac_setup(self) < 0) {
            Py_DECREF(self);
            return NULL;
        }
        return (PyObject *)self;
    }
    AcGen *gen = PyObject_GC_New(AcGen, st->AsCompletedGenType);
    if (gen == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    gen->core = (PyObject *)self;
    gen->weakreflist = NULL;
    PyObject_GC_Track(gen);
    return (PyObject *)gen;
}

static PyMethodDef as_completed_methods[] = {
    {"as_completed", (PyCFunction)(void (*)(void))as_completed,
     METH_FASTCALL | METH_KEYWORDS, as_completed_doc},
    {NULL},
};

int
fw_as_completed_init(PyObject *module, fw_state *st)
{
    PyType_Spec gen_spec = {
        .name = "fastwait._fastwait._AsCompletedGenerator",
        .basicsize = sizeof(AcGen),
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
                 Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
        .slots = ac_gen_slots,
    };
    PyType_Spec iter_spec = {
        .name = "fastwait._fastwait._AsCompletedIterator",
        .basicsize = sizeof(AsCompleted),
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
                 Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
        .slots = ac_iter_slots,
    };
    if ((st->AsCompletedGenType = (PyTypeObject *)PyType_FromModuleAndSpec(
             module, &gen_spec, NULL)) == NULL ||
        (st->AsCompletedIterType = (PyTypeObject *)PyType_FromModuleAndSpec(
             module, &iter_spec, NULL)) == NULL ||
        (st->AsCompletedWaitType = (PyTypeObject *)PyType_FromModuleAndSpec(
             module, &wait_one_spec, NULL)) == NULL) {
        return -1;
    }
    return PyModule_AddFunctions(module, as_completed_methods);
}

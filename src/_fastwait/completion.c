/* CompletionQueue: hand out futures and tasks in the order they complete.
 *
 * Beyond the stdlib.  The usual dispatcher,
 *
 *     while pending:
 *         done, pending = await asyncio.wait(pending, return_when=FIRST_COMPLETED)
 *
 * registers and removes a callback on every pending future at every call:
 * quadratic.  A CompletionQueue keeps one registration per awaitable for its
 * whole life (epoll's model, and Java's ExecutorCompletionService):
 *
 *     q = CompletionQueue(tasks)
 *     while q:
 *         task = await q.next()
 *
 * add() is O(1); every completion is O(1).  Coroutines that the queue turns
 * into tasks run in fastwait's CoroutineWrapper (child.c), so their
 * completion needs no done-callback at all.  Items are the original objects
 * (the futures and tasks that were added, or the tasks made for coroutines).
 */
#include "state.h"

/* A first-in first-out list: items from `head` on. */
typedef struct {
    PyObject *list;
    Py_ssize_t head;
} Fifo;

static inline Py_ssize_t
fifo_len(const Fifo *q)
{
    return q->list == NULL ? 0 : PyList_GET_SIZE(q->list) - q->head;
}

static int
fifo_push(Fifo *q, PyObject *item)
{
    if (q->list == NULL && (q->list = PyList_New(0)) == NULL) {
        return -1;
    }
    return PyList_Append(q->list, item);
}

/* New reference, or NULL (no error) when empty. */
static PyObject *
fifo_pop(Fifo *q)
{
    if (fifo_len(q) == 0) {
        return NULL;
    }
    PyObject *item = PyList_GET_ITEM(q->list, q->head);
    PyList_SET_ITEM(q->list, q->head, Py_NewRef(Py_None));
    q->head++;
    if (q->head == PyList_GET_SIZE(q->list)) {
        /* Empty again: start over (no error possible when shrinking). */
        (void)PyList_SetSlice(q->list, 0, q->head, NULL);
        q->head = 0;
    }
    else if (q->head >= 64 && q->head * 2 >= PyList_GET_SIZE(q->list)) {
        (void)PyList_SetSlice(q->list, 0, q->head, NULL);
        q->head = 0;
    }
    return item; /* the list's reference moved to the caller */
}

typedef struct {
    PyObject_HEAD
    fw_state *st;
    PyObject *loop;     /* bound at the first add() */
    PyObject *pending;  /* set of added, not yet done futures */
    Fifo ready;         /* done, not yet handed out */
    PyObject *ready_set; /* the same, for O(1) membership */
    Fifo waiters;       /* futures of next() calls waiting for an item */
    Fifo drainers;      /* futures of __aexit__ calls waiting for the end */
    PyObject *weakreflist;
    char closed;
} CQ;

#define CQ_CAST(op) ((CQ *)(op))

static Py_ssize_t cq_pending_len(CQ *self);

/* Make `fut` ready / hand out the next ready item (new reference, or NULL
 * with no error when none is ready). */
static int
cq_push_ready(CQ *self, PyObject *fut)
{
    if (PySet_Add(self->ready_set, fut) < 0) {
        return -1;
    }
    if (fifo_push(&self->ready, fut) < 0) {
        (void)PySet_Discard(self->ready_set, fut);
        return -1;
    }
    return 0;
}

static PyObject *
cq_pop_ready(CQ *self)
{
    PyObject *item = fifo_pop(&self->ready);
    if (item != NULL && PySet_Discard(self->ready_set, item) < 0) {
        /* Cannot fail for futures, which hash by identity. */
        PyErr_Clear();
    }
    return item;
}

/* Wake the first waiter that is still waiting. */
static int
cq_wake_one(CQ *self)
{
    fw_state *st = self->st;
    PyObject *w;
    while ((w = fifo_pop(&self->waiters)) != NULL) {
        if (w == Py_None) { /* a waiter that gave up */
            Py_DECREF(w);
            continue;
        }
        int woken = fw_release_waiter(st, w);
        Py_DECREF(w);
        if (woken != 0) {
            return woken < 0 ? -1 : 0;
        }
    }
    return 0;
}

/* Nothing is pending or ready: every waiting consumer must end (it finds
 * nothing and raises QueueEmpty / StopAsyncIteration). */
static int
cq_wake_all(CQ *self)
{
    int r = 0;
    while (fifo_len(&self->waiters) > 0 && r == 0) {
        r = cq_wake_one(self);
    }
    return r;
}

/* Wake every __aexit__ waiting for the pending set to empty. */
static int
cq_wake_drainers(CQ *self)
{
    fw_state *st = self->st;
    PyObject *w;
    int r = 0;
    while ((w = fifo_pop(&self->drainers)) != NULL) {
        if (w != Py_None && fw_release_waiter(st, w) < 0) {
            r = -1;
        }
        Py_DECREF(w);
    }
    return r;
}

/* `fut` finished: move it from pending to ready. */
static int
cq_completed(CQ *self, PyObject *fut)
{
    if (self->pending == NULL) {
        return 0;
    }
    int r = PySet_Discard(self->pending, fut);
    if (r <= 0) {
        return r; /* not ours (any more) */
    }
    if (cq_push_ready(self, fut) < 0 || cq_wake_one(self) < 0) {
        return -1;
    }
    if (PySet_GET_SIZE(self->pending) == 0 && fifo_len(&self->drainers)) {
        return cq_wake_drainers(self);
    }
    return 0;
}

/* The done-callback, a builtin method bound to the queue. */
static PyObject *
cq_on_done(PyObject *op, PyObject *fut)
{
    Py_INCREF(op);
    int r = cq_completed(CQ_CAST(op), fut);
    Py_DECREF(op);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef cq_on_done_def = {
    "_on_completion", cq_on_done, METH_O,
    "Done-callback of a CompletionQueue (internal).",
};

/* A coroutine the queue wrapped finished, inside its task's step: the
 * running task is the child. */
static int
cq_child_finished(PyObject *owner, Py_ssize_t index, PyObject *value,
                  PyObject *Py_UNUSED(exc))
{
    CQ *self = CQ_CAST(owner);
    PyObject *task = PyObject_CallOneArg(self->st->current_task, self->loop);
    if (task == NULL) {
        return -1;
    }
    int r = task == Py_None ? 0 : cq_completed(self, task);
    Py_DECREF(task);
    return r;
}

static int
cq_bind_loop(CQ *self, PyObject *loop)
{
    if (self->loop == NULL) {
        self->loop = Py_NewRef(loop);
        return 0;
    }
    if (self->loop != loop) {
        PyErr_SetString(PyExc_ValueError,
                        "The awaitable belongs to a different loop than the "
                        "one the CompletionQueue is bound to");
        return -1;
    }
    return 0;
}

/* The running loop, which must be the queue's (binding an unbound queue
 * to it): a new reference, or NULL with an error. */
static PyObject *
cq_running_loop(CQ *self)
{
    PyObject *loop = PyObject_CallNoArgs(self->st->get_running_loop);
    if (loop != NULL && cq_bind_loop(self, loop) < 0) {
        Py_CLEAR(loop);
    }
    return loop;
}

/* A coroutine the queue refuses is closed (it would warn "never awaited"
 * otherwise); the error in flight stays. */
static void
cq_close_refused(CQ *self, PyObject *aw)
{
    if (!PyCoro_CheckExact(aw)) {
        return;
    }
    PyObject *exc = fw_err_fetch();
    PyObject *r = PyObject_CallMethodNoArgs(aw, self->st->str_close);
    if (r == NULL) {
        Py_XDECREF(exc);
        return;
    }
    Py_DECREF(r);
    fw_err_restore(exc);
}

/* Track `fut` (a future of our loop, not yet tracked).  `watch`: add our
 * done-callback (not needed for tasks running our wrapper). */
static int
cq_track(CQ *self, PyObject *fut, int watch)
{
    fw_state *st = self->st;
    int done = fw_fut_bool(st, fut, FW_DONE);
    if (done < 0) {
        return -1;
    }
    if (done) {
        /* Already done: ready at once. */
        if (cq_push_ready(self, fut) < 0) {
            return -1;
        }
        return cq_wake_one(self);
    }
    if (PySet_Add(self->pending, fut) < 0) {
        return -1;
    }
    if (watch) {
        /* A bound method per future (as the stdlib's self._on_completion):
         * a queue that held its callback would be a reference cycle. */
        PyObject *callback = PyCMethod_New(&cq_on_done_def, (PyObject *)self,
                                           NULL, NULL);
        int r = callback == NULL
                    ? -1
                    : fw_add_done_callback(st, fut, callback);
        Py_XDECREF(callback);
        if (r < 0) {
            (void)PySet_Discard(self->pending, fut);
            return -1;
        }
    }
    return 0;
}

static int
cq_contains(CQ *self, PyObject *fut)
{
    int r = PySet_Contains(self->pending, fut);
    return r != 0 ? r : PySet_Contains(self->ready_set, fut);
}

PyDoc_STRVAR(cq_add_doc,
             "add($self, aw, /)\n--\n\n"
             "Add a future, a task, a coroutine or another awaitable and "
             "return the\nfuture or task that stands for it (a coroutine "
             "becomes a task, created\nat once).  An awaitable that is "
             "already done is ready at once.");

static PyObject *
cq_add(PyObject *op, PyObject *aw)
{
    CQ *self = CQ_CAST(op);
    fw_state *st = self->st;
    if (self->closed) {
        /* Closed like TaskGroup.create_task (3.13) closes what it refuses. */
        PyErr_SetString(PyExc_RuntimeError,
                        "add() on a closed CompletionQueue");
        cq_close_refused(self, aw);
        return NULL;
    }
    int isfut = fw_isfuture(st, aw);
    if (isfut < 0) {
        return NULL;
    }
    if (isfut) {
        PyObject *loop = fw_get_loop(st, aw);
        if (loop == NULL) {
            return NULL;
        }
        int r = cq_bind_loop(self, loop);
        Py_DECREF(loop);
        if (r < 0) {
            return NULL;
        }
        r = cq_contains(self, aw);
        if (r != 0) {
            if (r > 0) {
                PyErr_Format(PyExc_ValueError,
                             "%R is already in the CompletionQueue", aw);
            }
            return NULL;
        }
        if (cq_track(self, aw, 1) < 0) {
            return NULL;
        }
        return Py_NewRef(aw);
    }

    /* Coroutines and other awaitables run on the running loop, which must
     * be the queue's. */
    PyObject *loop = cq_running_loop(self);
    if (loop == NULL) {
        cq_close_refused(self, aw);
        return NULL;
    }
    PyObject *fut;
    int watch = 1;
    if (PyCoro_CheckExact(aw)) {
        int wrapped = fw_loop_runs_wrappers(st, loop);
        if (wrapped < 0) {
            Py_DECREF(loop);
            return NULL;
        }
        PyObject *coro = aw;
        PyObject *wrapper = NULL;
        if (wrapped) {
            wrapper = fw_child_new(st, aw, op, 0, cq_child_finished);
            if (wrapper == NULL) {
                Py_DECREF(loop);
                return NULL;
            }
            coro = wrapper;
            watch = 0;
        }
        fut = PyObject_CallMethodOneArg(loop, st->str_create_task, coro);
        if (fut == NULL) {
            if (wrapper != NULL) {
                fw_child_detach(wrapper);
            }
            fw_close_unscheduled(st, aw);
        }
        else if (wrapper != NULL && fw_child_finished(wrapper)) {
            /* Finished inside create_task (eager): the hook saw no task. */
            watch = 1;
        }
        Py_XDECREF(wrapper);
    }
    else {
        /* Other coroutines and awaitables: ensure_future(aw, loop=loop),
         * which raises the stdlib's TypeError for a non-awaitable. */
        PyObject *stack[2] = {aw, loop};
        fut = PyObject_Vectorcall(st->ensure_future, stack, 1, st->kw_loop);
    }
    if (fut == NULL) {
        Py_DECREF(loop);
        return NULL;
    }
    Py_DECREF(loop);
    if (cq_track(self, fut, watch) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

PyDoc_STRVAR(cq_poll_doc,
             "poll($self, /)\n--\n\n"
             "Return the next completed future or task without waiting, or "
             "None when\nnone is ready.");

static PyObject *
cq_poll(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    CQ *self = CQ_CAST(op);
    PyObject *item = cq_pop_ready(self);
    if (item == NULL) {
        Py_RETURN_NONE;
    }
    if (cq_pending_len(self) == 0 && fifo_len(&self->ready) == 0 &&
        cq_wake_all(self) < 0) {
        Py_DECREF(item);
        return NULL;
    }
    return item;
}

PyDoc_STRVAR(cq_cancel_doc,
             "cancel($self, /, msg=None)\n--\n\n"
             "Cancel every pending future and task; they become ready as "
             "they finish.\nReturn how many accepted the cancellation.");

static PyObject *
cq_cancel_all(CQ *self, PyObject *msg)
{
    fw_state *st = self->st;
    PyObject *snapshot = PySequence_List(self->pending);
    if (snapshot == NULL) {
        return NULL;
    }
    Py_ssize_t count = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(snapshot); i++) {
        PyObject *stack[2] = {PyList_GET_ITEM(snapshot, i), msg};
        PyObject *r = PyObject_VectorcallMethod(
            st->str_cancel, stack, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
            st->kw_msg);
        int t = r == NULL ? -1 : PyObject_IsTrue(r);
        Py_XDECREF(r);
        if (t < 0) {
            Py_DECREF(snapshot);
            return NULL;
        }
        count += t;
    }
    Py_DECREF(snapshot);
    return PyLong_FromSsize_t(count);
}

static PyObject *
cq_cancel(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    PyObject *msg = nargs > 0 ? args[0] : Py_None;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw > 1 ||
        (nkw == 1 &&
         PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0),
                                          "msg") != 0)) {
        return fw_signature_error(CQ_CAST(op)->st, "cq_cancel", op, args,
                                  nargs, kwnames);
    }
    if (nkw == 1) {
        msg = args[nargs];
    }
    return cq_cancel_all(CQ_CAST(op), msg);
}

PyDoc_STRVAR(cq_close_doc,
             "close($self, /)\n--\n\n"
             "Refuse further add() calls.  What was added stays: pending "
             "items still\ncomplete and are handed out.");

static PyObject *
cq_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    CQ_CAST(op)->closed = 1;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ */
/* next(timeout=None), __anext__(), __aenter__(), __aexit__(): FwCoro
 * state machines. */

enum { NEXT_CALL, ANEXT_CALL, AENTER_CALL, AEXIT_CALL };

typedef struct {
    PyObject_HEAD
    CQ *cq;
    PyObject *timeout;
    PyObject *waiter;
    PyObject *timer;
    int kind;
    int timed_out;
} NextState;

#define Next_CAST(op) ((NextState *)(op))

static PyObject *
next_timer_cancel(NextState *self)
{
    if (self->timer != NULL) {
        PyObject *r = PyObject_CallMethodNoArgs(self->timer,
                                                self->cq->st->str_cancel);
        Py_CLEAR(self->timer);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    return Py_None;
}

/* The waiter future is done: drop it from the waiter list if it is still
 * there (a timeout or a cancellation), passing a wake-up it got on to the
 * next waiter so that no item is left behind. */
static int
next_forget_waiter(NextState *self)
{
    CQ *cq = self->cq;
    PyObject *waiter = self->waiter;
    self->waiter = NULL;
    if (waiter == NULL) {
        return 0;
    }
    Fifo *w = &cq->waiters;
    for (Py_ssize_t i = w->head; w->list != NULL && i < PyList_GET_SIZE(w->list);
         i++) {
        if (PyList_GET_ITEM(w->list, i) == waiter) {
            PyList_SET_ITEM(w->list, i, Py_NewRef(Py_None));
            Py_DECREF(waiter); /* the list's reference */
            break;
        }
    }
    Py_DECREF(waiter);
    return 0;
}

static PyObject *
cq_aexit_step(NextState *self, PyObject *exc, PyObject **result);

static PyObject *
next_step(PyObject *op, PyObject *exc, PyObject **result)
{
    NextState *self = Next_CAST(op);
    CQ *cq = self->cq;
    fw_state *st = cq->st;
    if (self->kind == AEXIT_CALL) {
        return cq_aexit_step(self, exc, result);
    }
    if (self->kind == AENTER_CALL) {
        *result = Py_NewRef((PyObject *)cq);
        return NULL;
    }
    if (cq->loop == NULL) {
        /* Nothing was ever added: the queue is the running loop's. */
        PyObject *loop = cq_running_loop(cq);
        if (loop == NULL) {
            Py_XDECREF(exc);
            return NULL;
        }
        Py_DECREF(loop);
    }
    if (self->waiter != NULL) {
        /* Woken up, timed out, or cancelled. */
        int woken = 0;
        if (exc != NULL) {
            /* Did the waiter get a wake-up (a result) before the
             * consumer was cancelled?  One cancelled while still waiting
             * (its future cancelled) took none. */
            woken = fw_fut_bool(st, self->waiter, FW_DONE) == 1 &&
                    fw_fut_bool(st, self->waiter, FW_CANCELLED) == 0;
            PyErr_Clear();
        }
        (void)next_forget_waiter(self);
        if (exc != NULL) {
            /* Cancelled: a wake-up this waiter got goes to the next, so
             * that no ready item is left with nobody woken for it; one it
             * did not get is not passed on (the next waiter would wake for
             * an item already promised to another and queue again behind
             * the later ones). */
            if (next_timer_cancel(self) == NULL ||
                (woken && fifo_len(&cq->ready) > 0 && cq_wake_one(cq) < 0)) {
                PyErr_Clear();
            }
            fw_err_restore(exc);
            return NULL;
        }
    }
    PyObject *item = cq_pop_ready(cq);
    if (item != NULL) {
        if (next_timer_cancel(self) == NULL ||
            (cq_pending_len(cq) == 0 && fifo_len(&cq->ready) == 0 &&
             cq_wake_all(cq) < 0)) {
            Py_DECREF(item);
            return NULL;
        }
        *result = item;
        return NULL;
    }
    if (self->timed_out) {
        PyErr_SetNone(PyExc_TimeoutError);
        return NULL;
    }
    if (PySet_GET_SIZE(cq->pending) == 0) {
        if (next_timer_cancel(self) == NULL) {
            return NULL;
        }
        if (self->kind == ANEXT_CALL) {
            PyErr_SetNone(PyExc_StopAsyncIteration);
        }
        else {
            PyErr_SetString(st->QueueEmpty,
                            "next() on a CompletionQueue with nothing "
                            "pending or ready");
        }
        return NULL;
    }
    /* Wait for a completion. */
    PyObject *waiter = PyObject_CallMethodNoArgs(cq->loop,
                                                 st->str_create_future);
    if (waiter == NULL) {
        return NULL;
    }
    if (fifo_push(&cq->waiters, waiter) < 0) {
        Py_DECREF(waiter);
        return NULL;
    }
    self->waiter = waiter;
    if (self->timeout != Py_None && self->timer == NULL) {
        PyObject *stack[3] = {cq->loop, self->timeout, op};
        self->timer = PyObject_VectorcallMethod(
            st->str_call_later, stack, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
            NULL);
        if (self->timer == NULL) {
            (void)next_forget_waiter(self);
            return NULL;
        }
    }
    return Py_NewRef(waiter);
}

/* The timer of next(timeout=...): state() */
static PyObject *
next_state_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    NextState *self = Next_CAST(op);
    self->timed_out = 1;
    Py_CLEAR(self->timer);
    if (self->waiter != NULL &&
        fw_release_waiter(self->cq->st, self->waiter) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* __aexit__: close, cancel what is pending, wait until nothing is. */
static PyObject *
cq_aexit_step(NextState *self, PyObject *exc, PyObject **result)
{
    CQ *cq = self->cq;
    fw_state *st = cq->st;
    if (exc != NULL) {
        /* Cancelled while draining: stop waiting, re-raise. */
        Py_CLEAR(self->waiter);
        fw_err_restore(exc);
        return NULL;
    }
    if (self->waiter == NULL) {
        cq->closed = 1;
        PyObject *r = cq_cancel_all(cq, Py_None);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_CLEAR(self->waiter);
    if (PySet_GET_SIZE(cq->pending) == 0) {
        *result = Py_NewRef(Py_False);
        return NULL;
    }
    PyObject *waiter = PyObject_CallMethodNoArgs(cq->loop,
                                                 st->str_create_future);
    if (waiter == NULL) {
        return NULL;
    }
    if (fifo_push(&cq->drainers, waiter) < 0) {
        Py_DECREF(waiter);
        return NULL;
    }
    self->waiter = Py_NewRef(waiter);
    return waiter;
}

static int
next_traverse(PyObject *op, visitproc visit, void *arg)
{
    NextState *self = Next_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->cq);
    Py_VISIT(self->timeout);
    Py_VISIT(self->waiter);
    Py_VISIT(self->timer);
    return 0;
}

static int
next_clear(PyObject *op)
{
    NextState *self = Next_CAST(op);
    Py_CLEAR(self->cq);
    Py_CLEAR(self->timeout);
    Py_CLEAR(self->waiter);
    Py_CLEAR(self->timer);
    return 0;
}


static PyType_Slot next_slots[] = {
    {Py_tp_doc, (void *)"State of one CompletionQueue wait (internal)."},
    {Py_tp_traverse, next_traverse},
    {Py_tp_clear, next_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_call, next_state_call},
    {0, NULL},
};

static PyType_Spec next_spec = {
    .name = "fastwait._fastwait._CompletionWait",
    .basicsize = sizeof(NextState),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = next_slots,
};

static const fw_coro_def next_def = {"CompletionQueue.next", next_step};
static const fw_coro_def anext_def = {"CompletionQueue.__anext__", next_step};
static const fw_coro_def aenter_def = {"CompletionQueue.__aenter__",
                                       next_step};
static const fw_coro_def aexit_def = {"CompletionQueue.__aexit__", next_step};

static PyObject *
cq_make_wait(CQ *self, int kind, PyObject *timeout)
{
    fw_state *st = self->st;
    NextState *state = PyObject_GC_New(NextState, st->CompletionWaitType);
    if (state == NULL) {
        return NULL;
    }
    state->cq = (CQ *)Py_NewRef(self);
    state->timeout = Py_NewRef(timeout);
    state->waiter = NULL;
    state->timer = NULL;
    state->kind = kind;
    state->timed_out = 0;
    PyObject_GC_Track(state);
    const fw_coro_def *def = kind == NEXT_CALL    ? &next_def
                             : kind == ANEXT_CALL ? &anext_def
                             : kind == AENTER_CALL ? &aenter_def
                                                   : &aexit_def;
    PyObject *coro = fw_coro_new(st, def, (PyObject *)state);
    Py_DECREF(state);
    return coro;
}

PyDoc_STRVAR(cq_next_doc,
             "next($self, /, timeout=None)\n--\n\n"
             "Wait for the next completed future or task and return it.\n\n"
             "Raises TimeoutError after `timeout` seconds without a "
             "completion, and\nasyncio.QueueEmpty when nothing is pending "
             "or ready.");

static PyObject *
cq_next(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
        PyObject *kwnames)
{
    PyObject *timeout = nargs > 0 ? args[0] : Py_None;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw > 1 ||
        (nkw == 1 &&
         PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0),
                                          "timeout") != 0)) {
        return fw_signature_error(CQ_CAST(op)->st, "cq_next", op, args,
                                  nargs, kwnames);
    }
    if (nkw == 1) {
        timeout = args[nargs];
    }
    return cq_make_wait(CQ_CAST(op), NEXT_CALL, timeout);
}

static PyObject *
cq_anext(PyObject *op)
{
    return cq_make_wait(CQ_CAST(op), ANEXT_CALL, Py_None);
}

static PyObject *
cq_aiter(PyObject *op)
{
    return Py_NewRef(op);
}

static PyObject *
cq_aenter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return cq_make_wait(CQ_CAST(op), AENTER_CALL, Py_None);
}

static PyObject *
cq_aexit(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "__aexit__ expected 3 arguments, got %zd", nargs);
        return NULL;
    }
    return cq_make_wait(CQ_CAST(op), AEXIT_CALL, Py_None);
}

static Py_ssize_t
cq_pending_len(CQ *self)
{
    return self->pending == NULL ? 0 : PySet_GET_SIZE(self->pending);
}

static Py_ssize_t
cq_len(PyObject *op)
{
    CQ *self = CQ_CAST(op);
    return cq_pending_len(self) + fifo_len(&self->ready);
}

static PyObject *
cq_get_pending(PyObject *op, void *closure)
{
    return PyLong_FromSsize_t(cq_pending_len(CQ_CAST(op)));
}

static PyObject *
cq_get_ready(PyObject *op, void *closure)
{
    return PyLong_FromSsize_t(fifo_len(&CQ_CAST(op)->ready));
}

static PyObject *
cq_get_closed(PyObject *op, void *closure)
{
    return PyBool_FromLong(CQ_CAST(op)->closed);
}

static PyObject *
cq_repr(PyObject *op)
{
    CQ *self = CQ_CAST(op);
    return PyUnicode_FromFormat("<CompletionQueue pending=%zd ready=%zd%s>",
                                cq_pending_len(self),
                                fifo_len(&self->ready),
                                self->closed ? " closed" : "");
}

static PyObject *
cq_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    fw_state *st = fw_state_from_type(type);
    PyObject *aws = NULL;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) ||
        PyTuple_GET_SIZE(args) > 1) {
        /* The interpreter's own words for `(self, aws=(), /)`. */
        PyObject *func = PyDict_GetItemString(st->signatures, "cq_init");
        PyObject *self_arg = PyTuple_Pack(1, Py_None);
        PyObject *full = func == NULL || self_arg == NULL
                             ? NULL
                             : PySequence_Concat(self_arg, args);
        Py_XDECREF(self_arg);
        if (full != NULL) {
            PyObject *r = PyObject_Call(func, full, kwargs);
            Py_XDECREF(r);
            Py_DECREF(full);
        }
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "CompletionQueue(): bad arguments");
        }
        return NULL;
    }
    if (PyTuple_GET_SIZE(args) == 1) {
        aws = PyTuple_GET_ITEM(args, 0);
    }
    CQ *self = (CQ *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->st = st;
    self->pending = PySet_New(NULL);
    self->ready_set = PySet_New(NULL);
    if (self->pending == NULL || self->ready_set == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    if (aws != NULL) {
        PyObject *it = PyObject_GetIter(aws);
        if (it == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        PyObject *aw;
        while ((aw = PyIter_Next(it)) != NULL) {
            PyObject *fut = cq_add((PyObject *)self, aw);
            Py_DECREF(aw);
            if (fut == NULL) {
                break;
            }
            Py_DECREF(fut);
        }
        Py_DECREF(it);
        if (PyErr_Occurred()) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

static int
cq_traverse(PyObject *op, visitproc visit, void *arg)
{
    CQ *self = CQ_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->loop);
    Py_VISIT(self->pending);
    Py_VISIT(self->ready_set);
    Py_VISIT(self->ready.list);
    Py_VISIT(self->waiters.list);
    Py_VISIT(self->drainers.list);
    return 0;
}

static int
cq_clear(PyObject *op)
{
    CQ *self = CQ_CAST(op);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->pending);
    Py_CLEAR(self->ready_set);
    Py_CLEAR(self->ready.list);
    Py_CLEAR(self->waiters.list);
    Py_CLEAR(self->drainers.list);
    self->ready.head = self->waiters.head = self->drainers.head = 0;
    return 0;
}


static PyMethodDef cq_methods[] = {
    {"add", cq_add, METH_O, cq_add_doc},
    {"poll", cq_poll, METH_NOARGS, cq_poll_doc},
    {"next", (PyCFunction)(void (*)(void))cq_next,
     METH_FASTCALL | METH_KEYWORDS, cq_next_doc},
    {"cancel", (PyCFunction)(void (*)(void))cq_cancel,
     METH_FASTCALL | METH_KEYWORDS, cq_cancel_doc},
    {"close", cq_close, METH_NOARGS, cq_close_doc},
    {"__aenter__", cq_aenter, METH_NOARGS,
     "Return the queue itself."},
    {"__aexit__", (PyCFunction)(void (*)(void))cq_aexit, METH_FASTCALL,
     "Close the queue, cancel what is pending and wait until it is done.\n"
     "The items stay: poll() and next() still hand them out."},
    {NULL},
};

static PyGetSetDef cq_getset[] = {
    {"pending", cq_get_pending, NULL,
     "How many added awaitables are not done yet.", NULL},
    {"ready", cq_get_ready, NULL,
     "How many are done and not yet handed out.", NULL},
    {"closed", cq_get_closed, NULL, "True after close() or __aexit__.",
     NULL},
    {NULL},
};

static PyMemberDef cq_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(CQ, weakreflist),
     Py_READONLY},
    {NULL},
};

PyDoc_STRVAR(
    cq_doc,
    "CompletionQueue(aws=(), /)\n--\n\n"
    "Hand out futures and tasks in the order they complete.\n\n"
    "add() takes futures, tasks, coroutines (which become tasks) and other\n"
    "awaitables at any time, in O(1); each completion costs O(1).  next()\n"
    "waits for the next completed one (optionally with a timeout), poll()\n"
    "returns it without waiting, `async for` iterates until nothing is\n"
    "left, len() counts what is pending or ready.  As an async context\n"
    "manager, the exit cancels what is still pending and waits for it.\n\n"
    "The fix for the quadratic dispatcher loop:\n\n"
    "    q = CompletionQueue(tasks)\n"
    "    while q:\n"
    "        task = await q.next()\n");

static PyType_Slot cq_slots[] = {
    {Py_tp_doc, (void *)cq_doc},
    {Py_tp_new, cq_new},
    {Py_tp_repr, cq_repr},
    {Py_tp_traverse, cq_traverse},
    {Py_tp_clear, cq_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_methods, cq_methods},
    {Py_tp_getset, cq_getset},
    {Py_tp_members, cq_members},
    {Py_am_aiter, cq_aiter},
    {Py_am_anext, cq_anext},
    {Py_sq_length, cq_len},
    {0, NULL},
};

static PyType_Spec cq_spec = {
    .name = "fastwait._fastwait.CompletionQueue",
    .basicsize = sizeof(CQ),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = cq_slots,
};

int
fw_completion_init(PyObject *module, fw_state *st)
{
    st->CompletionWaitType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &next_spec, NULL);
    if (st->CompletionWaitType == NULL) {
        return -1;
    }
    st->CompletionQueueType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &cq_spec, NULL);
    if (st->CompletionQueueType == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "CompletionQueue",
                                 (PyObject *)st->CompletionQueueType);
}

/* race(*aws, timeout=None)
 *
 * docs/extras.md, "race(*aws, timeout=None)".  race() checks its arguments
 * and returns a native coroutine (coro.c) whose first step, on the running
 * loop, arms the deadline (fw_release_timer: the shared loop timer), wraps
 * the children (ensure_future, duplicates by identity are one child) and
 * awaits a waiter future.  Racing is decided the moment a child succeeds,
 * every child has failed or a child raised KeyboardInterrupt/SystemExit
 * (inside that child's step or done-callback), or when race is woken by
 * the deadline or a throw() (the caller cancelled): then the deadline is
 * cancelled and every unfinished child is cancelled at once, and the
 * waiter is released when the last child is done (a fresh waiter replaces
 * one the caller's cancellation cancelled).  race then returns or raises.
 *
 * Coroutines that fastwait turns into Tasks itself run in the child wrapper
 * (child.c) where the loop runs it as is: their completion is seen inside
 * the child's own step, with no done-callback.  On asyncio's own
 * create_task with no task factory that Task is made here as create_task
 * makes it (race_task_mode), one Python call less per child.  Futures and Tasks passed in
 * (and every child on loops or task factories fastwait does not know) get
 * the RaceState as a done-callback.
 *
 * Decisions taken where the spec is silent:
 *   - timeout is checked before the "no awaitable" check;
 *   - with duplicates, the ExceptionGroup holds one error per child (the
 *     order of first appearance);
 *   - a cancelled child's error is the CancelledError its exception()
 *     raises (fut._make_cancelled_error());
 *   - outcome priority once every child is done: a child's
 *     KeyboardInterrupt/SystemExit, then an exception thrown into race (the
 *     caller's CancelledError), then the deadline, then the winner, then
 *     "all racers failed";
 *   - a success seen before race's own step runs wins over a deadline that
 *     passed in the same loop iteration (the deadline only wakes race);
 *     a child finishing in its first step wins over timeout <= 0;
 *   - losers are cancelled from the deciding child's step: a loser whose
 *     step was due later in the same iteration gets the CancelledError;
 *   - an error while creating the children (a future of another loop, a
 *     non-awaitable) cancels and awaits the children created so far,
 *     closes the native coroutines not yet wrapped, then raises;
 *   - close() (GeneratorExit) while racing cancels the children without
 *     awaiting them.
 */
#include "state.h"
#include <math.h>

/* Per-child flags. */
#define RF_DONE 0x01      /* finished (its outcome is recorded) */
#define RF_OK 0x02        /* a result: the winner, or a later success */
#define RF_CANCELLED 0x04 /* ended cancelled */
#define RF_FAILED 0x08    /* ended with an exception */
#define RF_RETRIEVED 0x10 /* its exception() was called */

enum { PH_NEW, PH_RACING, PH_DRAINING, PH_OVER };
enum { D_NONE, D_WIN, D_ALLFAIL, D_BASE, D_TIMEOUT, D_THROWN };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fw_state *st;
    PyObject *aws;          /* the arguments (tuple) until the first step */
    PyObject *loop;
    PyObject *waiter;       /* what race awaits */
    PyObject *timer;        /* fw_release_timer's, or NULL */
    PyObject *graph_waiter; /* 3.14+: the task of the call-graph edges */
    PyObject **children;    /* unique children, argument order (owned) */
    unsigned char *flags;
    Py_ssize_t nchildren;
    Py_ssize_t remaining;   /* children not done */
    char constructing;      /* the children are being created */
    char direct_task;       /* wrapped children's Tasks made by tasks.Task()
                               (race_task_mode) */
    Py_ssize_t next_arg;    /* aws[next_arg:] are not processed yet */
    PyObject *value;        /* the winner's result */
    PyObject *thrown;       /* thrown into race, or the creation error */
    PyObject *base_exc;     /* a child's KeyboardInterrupt/SystemExit */
    /* A wrapped child that finished inside create_task (eager). */
    PyObject *pend_value, *pend_exc;
    char pend;
    double timeout;
    char has_timeout;
    char phase;
    char decision;
} RaceState;

#define Race_CAST(op) ((RaceState *)(op))

static void
race_release_children(RaceState *self)
{
    fw_ref_array_free(&self->children, self->nchildren);
    PyMem_Free(self->flags);
    self->flags = NULL;
    self->nchildren = 0;
    self->remaining = 0;
}

static int
race_traverse(PyObject *op, visitproc visit, void *arg)
{
    RaceState *self = Race_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->aws);
    Py_VISIT(self->loop);
    Py_VISIT(self->waiter);
    Py_VISIT(self->timer);
    Py_VISIT(self->graph_waiter);
    int r = fw_ref_array_visit(self->children, self->nchildren, visit, arg);
    if (r != 0) {
        return r;
    }
    Py_VISIT(self->value);
    Py_VISIT(self->thrown);
    Py_VISIT(self->base_exc);
    Py_VISIT(self->pend_value);
    Py_VISIT(self->pend_exc);
    return 0;
}

static int
race_clear(PyObject *op)
{
    RaceState *self = Race_CAST(op);
    Py_CLEAR(self->aws);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->waiter);
    Py_CLEAR(self->timer);
    Py_CLEAR(self->graph_waiter);
    race_release_children(self);
    Py_CLEAR(self->value);
    Py_CLEAR(self->thrown);
    Py_CLEAR(self->base_exc);
    Py_CLEAR(self->pend_value);
    Py_CLEAR(self->pend_exc);
    /* Nothing can go on without them (a step after a clear raises). */
    self->phase = PH_OVER;
    return 0;
}

/* KeyboardInterrupt or SystemExit (TaskGroup's _is_base_error). */
static int
is_base_error(PyObject *exc)
{
    return PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt) ||
           PyErr_GivenExceptionMatches(exc, PyExc_SystemExit);
}

static int
release(RaceState *self)
{
    return self->waiter == NULL ? 0 : fw_release_waiter(self->st,
                                                        self->waiter) < 0
                                          ? -1
                                          : 0;
}

static int
cancel_timer(RaceState *self)
{
    if (self->timer == NULL) {
        return 0;
    }
    int r = fw_release_timer_cancel(self->st, self->timer);
    Py_CLEAR(self->timer);
    return r;
}

/* Cancel every unfinished child. */
static int
cancel_children(RaceState *self)
{
    fw_state *st = self->st;
    for (Py_ssize_t i = 0; i < self->nchildren; i++) {
        if (self->flags[i] & RF_DONE) {
            continue;
        }
        PyObject *child = self->children[i];
        PyObject *r = Py_IS_TYPE(child, st->TaskType)
                          ? PyObject_CallOneArg(st->task_cancel, child)
                          : PyObject_CallMethodNoArgs(child, st->str_cancel);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    return 0;
}

/* Racing is decided (`d`): cancel the deadline and every unfinished
 * child at once; race's waiter is released when the last child is done.
 * -1 error (the children not cancelled yet are left running). */
static int
decide(RaceState *self, int d)
{
    self->decision = (char)d;
    self->phase = PH_DRAINING;
    if (cancel_timer(self) < 0 || cancel_children(self) < 0) {
        return -1;
    }
    return self->remaining == 0 && !self->constructing ? release(self) : 0;
}

/* Child `i` finished: `flag` is RF_OK (value: its result), RF_CANCELLED or
 * RF_FAILED (exc: its exception, borrowed, or NULL when not known). */
static int
child_done(RaceState *self, Py_ssize_t i, int flag, PyObject *value,
           PyObject *exc)
{
    if (self->flags == NULL || (self->flags[i] & RF_DONE)) {
        return 0;
    }
    self->flags[i] |= (unsigned char)(RF_DONE | flag);
    self->remaining--;
    if (self->phase == PH_OVER) {
        return 0;
    }
    if (flag == RF_FAILED && exc != NULL && is_base_error(exc) &&
        self->base_exc == NULL) {
        self->base_exc = Py_NewRef(exc);
        if (self->phase == PH_RACING) {
            return decide(self, D_BASE);
        }
    }
    if (self->phase == PH_RACING) {
        if (flag == RF_OK) {
            self->value = Py_NewRef(value);
            return decide(self, D_WIN);
        }
        if (self->remaining == 0 && !self->constructing) {
            return decide(self, D_ALLFAIL);
        }
        return 0;
    }
    /* PH_DRAINING */
    return self->remaining == 0 && !self->constructing ? release(self) : 0;
}

/* A wrapped child's coroutine returned (value) or raised (exc). */
static int
race_wrapped_finished(PyObject *owner, Py_ssize_t i, PyObject *value,
                      PyObject *exc)
{
    RaceState *self = Race_CAST(owner);
    if (self->children == NULL) {
        return 0;
    }
    PyObject *task = self->children[i];
    if (task == NULL) {
        /* Inside create_task (eager): recorded once the Task exists. */
        self->pend = 1;
        Py_XSETREF(self->pend_value, Py_XNewRef(value));
        Py_XSETREF(self->pend_exc, Py_XNewRef(exc));
        return 0;
    }
    if (value != NULL) {
        /* Unreadable (never for asyncio's Tasks): the coroutine's result. */
        int must_cancel = fw_task_must_cancel(self->st, task) > 0;
        return child_done(self, i, must_cancel ? RF_CANCELLED : RF_OK, value,
                          NULL);
    }
    if (PyErr_GivenExceptionMatches(exc, self->st->CancelledError)) {
        return child_done(self, i, RF_CANCELLED, NULL, NULL);
    }
    return child_done(self, i, RF_FAILED, NULL, exc);
}

/* The outcome of a done future: its flag, its result (*value) or its
 * exception (*exc), both new references.  Marks the exception retrieved.
 * -1 error. */
static int
classify_done(fw_state *st, PyObject *fut, PyObject **value, PyObject **exc)
{
    *value = *exc = NULL;
    int cancelled = fw_fut_bool(st, fut, FW_CANCELLED);
    if (cancelled != 0) {
        return cancelled < 0 ? -1 : RF_CANCELLED;
    }
    PyObject *e = fw_fut_call(st, fut, FW_EXCEPTION);
    if (e == NULL) {
        return -1;
    }
    if (e != Py_None) {
        *exc = e;
        return RF_FAILED | RF_RETRIEVED;
    }
    Py_DECREF(e);
    *value = fw_fut_call(st, fut, FW_RESULT);
    return *value == NULL ? -1 : RF_OK;
}

/* The done-callback: state(fut). */
static PyObject *
race_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                PyObject *kwnames)
{
    RaceState *self = Race_CAST(op);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) || nargs != 1) {
        PyErr_SetString(PyExc_TypeError,
                        "race callback takes exactly 1 argument");
        return NULL;
    }
    PyObject *fut = args[0];
    Py_ssize_t i = -1;
    if (self->children != NULL) {
        for (Py_ssize_t j = 0; j < self->nchildren; j++) {
            if (self->children[j] == fut) {
                i = j;
                break;
            }
        }
    }
    if (i < 0 || (self->flags[i] & RF_DONE)) {
        Py_RETURN_NONE;
    }
    Py_INCREF(op);
    PyObject *value, *exc;
    int flag = classify_done(self->st, fut, &value, &exc);
    int r = flag < 0 ? -1 : 0;
    if (r == 0) {
        if (flag & RF_RETRIEVED) {
            self->flags[i] |= RF_RETRIEVED;
        }
        r = child_done(self, i, flag & ~RF_RETRIEVED, value, exc);
    }
    Py_XDECREF(value);
    Py_XDECREF(exc);
    Py_DECREF(op);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

/* ---- the first step */

typedef struct {
    PyObject **keys;
    size_t mask;
} PtrSet;

/* Was `key` seen?  If not, add it (when `add`).  -1 error, 0/1. */
static int
ptr_set_seen(PtrSet *s, PyObject *key, int add)
{
    size_t i = fw_ptr_slot(key, s->mask);
    for (; s->keys[i] != NULL; i = (i + 1) & s->mask) {
        if (s->keys[i] == key) {
            return 1;
        }
    }
    if (add) {
        s->keys[i] = key;
    }
    return 0;
}

/* After child `i` exists: an outcome it reported inside create_task. */
static int
commit_pending(RaceState *self, Py_ssize_t i)
{
    if (!self->pend) {
        return 0;
    }
    self->pend = 0;
    PyObject *value = self->pend_value, *exc = self->pend_exc;
    self->pend_value = self->pend_exc = NULL;
    int r;
    if (value != NULL) {
        /* A task cancelled in that step is cancelled by now. */
        r = fw_fut_bool(self->st, self->children[i], FW_CANCELLED);
        if (r >= 0) {
            r = child_done(self, i, r ? RF_CANCELLED : RF_OK, value, NULL);
        }
    }
    else {
        r = race_wrapped_finished((PyObject *)self, i, NULL, exc);
    }
    Py_XDECREF(value);
    Py_XDECREF(exc);
    return r;
}

/* Create child number self->nchildren from `arg` and record it.  -1
 * error. */
static int
make_child(RaceState *self, PyObject *arg, int wrapped)
{
    fw_state *st = self->st;
    Py_ssize_t i = self->nchildren;
    PyObject *fut;
    if (wrapped && PyCoro_CheckExact(arg)) {
        PyObject *wrapper = fw_child_new(st, arg, (PyObject *)self, i,
                                         race_wrapped_finished);
        if (wrapper == NULL) {
            return -1;
        }
        if (self->direct_task) {
            /* The loop's create_task(wrapper): tasks.Task, read at each
             * use, called as it calls it: (wrapper, loop=loop, name=None,
             * context=None) up to 3.13, (wrapper, loop=loop) from 3.14
             * (create_task(coro, **kwargs)).  asyncio's C Task takes the
             * two Nones as absent: they are left out for it (cheaper
             * argument parsing). */
            PyObject *cls = fw_task_class(st);
            PyObject *stack[4] = {wrapper, self->loop, Py_None, Py_None};
            PyObject *kwnames = cls == (PyObject *)st->TaskType ||
                                        Py_Version >= 0x030E0000
                                    ? st->kw_loop
                                    : st->kw_loop_name_context;
            fut = cls == NULL ? NULL
                              : PyObject_Vectorcall(cls, stack, 1, kwnames);
            Py_XDECREF(cls);
        }
        else {
            fut = PyObject_CallMethodOneArg(self->loop, st->str_create_task,
                                            wrapper);
        }
        if (fut == NULL) {
            fw_child_detach(wrapper);
            fw_close_unscheduled(st, arg);
            Py_DECREF(wrapper);
            return -1;
        }
        Py_DECREF(wrapper);
        self->children[i] = fut;
        self->nchildren++;
        self->remaining++;
        if (commit_pending(self, i) < 0) {
            return -1;
        }
        return fw_graph_add(st, fut, self->graph_waiter);
    }
    fut = fw_ensure_future(st, arg, self->loop);
    if (fut == NULL) {
        return -1;
    }
    self->children[i] = fut;
    self->nchildren++;
    self->remaining++;
    if (fw_graph_add(st, fut, self->graph_waiter) < 0 ||
        fw_add_done_callback(st, fut, (PyObject *)self) < 0) {
        return -1;
    }
    return 0;
}

/* Close the native coroutines among aws[next_arg:] that are no child
 * (they would never run).  The error set, if any, is kept. */
static void
close_unstarted(RaceState *self)
{
    fw_state *st = self->st;
    if (self->aws == NULL) {
        return;
    }
    PyObject *exc = fw_err_fetch();
    Py_ssize_t n = PyTuple_GET_SIZE(self->aws);
    for (Py_ssize_t j = self->next_arg; j < n; j++) {
        PyObject *arg = PyTuple_GET_ITEM(self->aws, j);
        if (!PyCoro_CheckExact(arg)) {
            continue;
        }
        int child = 0;
        for (Py_ssize_t k = 0; k < self->next_arg && !child; k++) {
            child = PyTuple_GET_ITEM(self->aws, k) == arg;
        }
        if (child) {
            continue;
        }
        PyObject *r = PyObject_CallMethodNoArgs(arg, st->str_close);
        if (r == NULL) {
            PyErr_WriteUnraisable(arg);
        }
        Py_XDECREF(r);
    }
    if (exc != NULL) {
        fw_err_restore(exc);
    }
}

/* How the children are made on `loop`: 0 ensure_future and a
 * done-callback each; 1 a child wrapper run by loop.create_task() (uvloop,
 * eager_task_factory); 2 a child wrapper run by a tasks.Task() made here:
 * with asyncio's own create_task and no task factory that is the Task
 * create_task() would make (the loop is running, so it is not closed; in
 * debug mode the source traceback ends at the same frame, create_task's
 * being deleted), and it saves a Python call per child (as eager.c's
 * direct Tasks).  -1 error. */
static int
race_task_mode(fw_state *st, PyObject *loop)
{
    int kind = fw_loop_task_factory(st, loop);
    if (kind != FW_FACTORY_NONE) {
        return kind < 0 ? -1 : kind == FW_FACTORY_EAGER;
    }
    /* loop.create_task as the instance has it: one set on the instance
     * (a spy, a wrapper) is called as ensure_future would call it. */
    PyObject *create = PyObject_GetAttr(loop, st->str_create_task);
    if (create == NULL) {
        return -1;
    }
    int direct = PyMethod_Check(create) &&
                 PyMethod_GET_FUNCTION(create) == st->base_create_task &&
                 PyMethod_GET_SELF(create) == loop;
    Py_DECREF(create);
    return direct ? 2 : 1;
}

/* Start racing: the waiter, the deadline, the children.  0, or -1 with
 * an error (nothing is running then but the children created so far). */
static int
race_start(RaceState *self)
{
    fw_state *st = self->st;
    Py_ssize_t nargs = PyTuple_GET_SIZE(self->aws);
    self->loop = PyObject_CallNoArgs(st->get_running_loop);
    if (self->loop == NULL) {
        close_unstarted(self);
        return -1;
    }
    int wrapped = race_task_mode(st, self->loop);
    if (wrapped < 0) {
        close_unstarted(self);
        return -1;
    }
    self->direct_task = wrapped == 2;
    self->waiter = PyObject_CallMethodNoArgs(self->loop,
                                             st->str_create_future);
    if (self->waiter == NULL ||
        fw_graph_waiter(st, self->loop, &self->graph_waiter) < 0) {
        close_unstarted(self);
        return -1;
    }
    if (self->has_timeout) {
        /* The deadline: loop.time() + timeout, before any child runs. */
        PyObject *delay = PyFloat_FromDouble(self->timeout);
        self->timer = delay == NULL ? NULL
                                    : fw_release_timer(st, self->loop, delay,
                                                       self->waiter);
        Py_XDECREF(delay);
        if (self->timer == NULL) {
            close_unstarted(self);
            return -1;
        }
    }
    self->children = PyMem_Calloc((size_t)nargs, sizeof(PyObject *));
    self->flags = PyMem_Calloc((size_t)nargs, 1);
    size_t cap = fw_ptr_table_capacity(nargs);
    PtrSet seen = {PyMem_Calloc(cap, sizeof(PyObject *)), cap - 1};
    if (self->children == NULL || self->flags == NULL || seen.keys == NULL) {
        PyMem_Free(seen.keys);
        PyErr_NoMemory();
        close_unstarted(self);
        return -1;
    }
    self->phase = PH_RACING;
    self->constructing = 1;
    for (Py_ssize_t j = 0; j < nargs; j++) {
        PyObject *arg = PyTuple_GET_ITEM(self->aws, j);
        self->next_arg = j;
        if (ptr_set_seen(&seen, arg, 1)) {
            continue; /* a duplicate: the same child */
        }
        Py_ssize_t before = self->nchildren;
        if (make_child(self, arg, wrapped) < 0) {
            if (self->nchildren > before) {
                self->next_arg = j + 1; /* it is a child */
            }
            self->constructing = 0;
            if (self->pend && self->pend_exc != NULL &&
                is_base_error(self->pend_exc) && self->base_exc == NULL) {
                /* It raised out of its eager first step. */
                self->base_exc = Py_NewRef(self->pend_exc);
            }
            self->pend = 0;
            Py_CLEAR(self->pend_value);
            Py_CLEAR(self->pend_exc);
            close_unstarted(self);
            PyMem_Free(seen.keys);
            return -1;
        }
    }
    self->constructing = 0;
    PyMem_Free(seen.keys);
    Py_CLEAR(self->aws);
    if (self->phase == PH_DRAINING) {
        /* Decided inside create_task (eager): the children created after
         * the decision are cancelled too. */
        if (decide(self, self->decision) < 0) {
            return -1;
        }
    }
    else if (self->remaining == 0) {
        /* Every child was done at creation, none with a result. */
        if (decide(self, D_ALLFAIL) < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- the end */

/* The error of a failed or cancelled child, marking it retrieved: a new
 * reference, or NULL with an error. */
static PyObject *
child_error(fw_state *st, PyObject *fut)
{
    PyObject *e = fw_fut_call(st, fut, FW_EXCEPTION);
    if (e == NULL && PyErr_ExceptionMatches(st->CancelledError)) {
        return fw_err_fetch();
    }
    if (e == Py_None) {
        /* Cannot happen for a child recorded as failed. */
        Py_DECREF(e);
        PyErr_SetString(PyExc_SystemError, "race: child without an error");
        return NULL;
    }
    return e;
}

/* Every child is done: retrieve, and return or raise. */
static PyObject *
race_finish(RaceState *self, PyObject **result)
{
    fw_state *st = self->st;
    self->phase = PH_OVER;
    PyObject *errors = NULL;
    if (self->decision == D_ALLFAIL && self->base_exc == NULL &&
        self->thrown == NULL) {
        errors = PyList_New(self->nchildren);
        if (errors == NULL) {
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < self->nchildren; i++) {
        PyObject *fut = self->children[i];
        if (fw_graph_discard(st, fut, self->graph_waiter) < 0) {
            goto fail;
        }
        unsigned char f = self->flags[i];
        if (errors != NULL) {
            PyObject *e = child_error(st, fut);
            if (e == NULL) {
                goto fail;
            }
            PyList_SET_ITEM(errors, i, e);
        }
        else if ((f & RF_FAILED) && !(f & RF_RETRIEVED)) {
            PyObject *e = fw_fut_call(st, fut, FW_EXCEPTION);
            if (e == NULL) {
                goto fail;
            }
            Py_DECREF(e);
        }
    }
    PyObject *ret = NULL;
    if (self->base_exc != NULL) {
        fw_err_restore(Py_NewRef(self->base_exc));
    }
    else if (self->thrown != NULL) {
        fw_err_restore(Py_NewRef(self->thrown));
    }
    else if (self->decision == D_TIMEOUT) {
        PyErr_SetNone(PyExc_TimeoutError);
    }
    else if (self->decision == D_WIN) {
        ret = Py_NewRef(self->value);
    }
    else {
        PyObject *msg = PyUnicode_FromString("all racers failed");
        PyObject *group = msg == NULL
                              ? NULL
                              : PyObject_CallFunctionObjArgs(
                                    PyExc_BaseExceptionGroup, msg, errors,
                                    NULL);
        Py_XDECREF(msg);
        if (group != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(group), group);
            Py_DECREF(group);
        }
    }
    Py_XDECREF(errors);
    race_clear((PyObject *)self);
    *result = ret;
    return NULL;
fail:
    Py_XDECREF(errors);
    race_clear((PyObject *)self);
    return NULL;
}

/* Wait for the last child (a fresh waiter when the caller's cancellation
 * cancelled ours), or finish. */
static PyObject *
race_wait(RaceState *self, PyObject **result)
{
    if (self->remaining == 0) {
        return race_finish(self, result);
    }
    int done = fw_fut_bool(self->st, self->waiter, FW_DONE);
    if (done < 0) {
        return NULL;
    }
    if (done) {
        Py_SETREF(self->waiter,
                  PyObject_CallMethodNoArgs(self->loop,
                                            self->st->str_create_future));
    }
    return Py_XNewRef(self->waiter);
}

/* Racing is over: decide `d` (an error in cancelling is raised once the
 * children are done), then wait for the last child. */
static PyObject *
race_drain(RaceState *self, int d, PyObject **result)
{
    if (decide(self, d) < 0) {
        if (self->thrown == NULL) {
            self->thrown = fw_err_fetch();
        }
        else {
            PyErr_Clear();
        }
    }
    return race_wait(self, result);
}

/* close() / a thrown GeneratorExit: nothing can be awaited any more. */
static PyObject *
race_abandon(RaceState *self, PyObject *exc)
{
    self->phase = PH_OVER;
    if (cancel_timer(self) < 0 || cancel_children(self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    race_clear((PyObject *)self);
    fw_err_restore(exc);
    return NULL;
}

static PyObject *
race_step(PyObject *op, PyObject *exc, PyObject **result)
{
    RaceState *self = Race_CAST(op);
    if (exc != NULL && PyErr_GivenExceptionMatches(exc, PyExc_GeneratorExit)) {
        return race_abandon(self, exc);
    }
    switch (self->phase) {
    case PH_NEW:
        if (race_start(self) < 0) {
            self->thrown = fw_err_fetch();
            Py_CLEAR(self->aws);
            return race_drain(self, D_THROWN, result);
        }
        return Py_NewRef(self->waiter);
    case PH_RACING:
        if (exc != NULL) {
            self->thrown = exc;
            return race_drain(self, D_THROWN, result);
        }
        /* Woken while no child decided: the deadline. */
        return race_drain(self, D_TIMEOUT, result);
    case PH_DRAINING:
        if (exc != NULL) {
            /* A cancellation while the children finish: remembered, the
             * waiting goes on. */
            if (self->thrown == NULL) {
                self->thrown = exc;
            }
            else {
                Py_DECREF(exc);
            }
        }
        return race_wait(self, result);
    default:
        Py_XDECREF(exc);
        PyErr_SetString(PyExc_RuntimeError, "race: finished");
        return NULL;
    }
}

/* Closed or thrown into before its first step (the awaiting task was
 * cancelled before it ran): the coroutines it was given never run; close
 * them, so they do not warn "never awaited" (docs/extras.md). */
static void
race_discard(PyObject *op)
{
    RaceState *self = Race_CAST(op);
    if (self->phase == PH_NEW) {
        self->next_arg = 0;
        close_unstarted(self);
        self->phase = PH_OVER;
    }
}

static const fw_coro_def race_coro_def = {"race", race_step, NULL,
                                          race_discard};

static PyObject *
race_repr(PyObject *op)
{
    RaceState *self = Race_CAST(op);
    static const char *phases[] = {"new", "racing", "draining", "over"};
    return PyUnicode_FromFormat("<race %s children=%zd pending=%zd>",
                                phases[(int)self->phase], self->nchildren,
                                self->remaining);
}

/* Read like a closure where a future's repr lists its callbacks. */
static PyGetSetDef race_getset[] = {
    {"__qualname__", fw_get_closure_text, NULL, NULL,
     "race.<locals>._on_completion"},
    {"__name__", fw_get_closure_text, NULL, NULL, "_on_completion"},
    {NULL},
};

static PyMemberDef race_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(RaceState, vectorcall),
     Py_READONLY},
    {NULL},
};

static PyType_Slot race_slots[] = {
    {Py_tp_doc, (void *)"State of one fastwait race() call (internal)."},
    {Py_tp_repr, race_repr},
    {Py_tp_traverse, race_traverse},
    {Py_tp_clear, race_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, race_members},
    {Py_tp_getset, race_getset},
    {0, NULL},
};

static PyType_Spec race_spec = {
    .name = "fastwait._fastwait._RaceState",
    .basicsize = sizeof(RaceState),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = race_slots,
};

PyDoc_STRVAR(
    race_doc,
    "race(*aws, timeout=None)\n--\n\n"
    "Run the awaitables concurrently; return the first successful result.\n"
    "\n"
    "A coroutine: when awaited, each awaitable is wrapped as gather() does\n"
    "(duplicates are one child).  The first child to finish with a result\n"
    "wins: every unfinished child is cancelled and awaited, and the\n"
    "winner's result is returned.  If every child fails, raises\n"
    "ExceptionGroup('all racers failed', errors) in argument order (a\n"
    "BaseExceptionGroup if an error is not an Exception; a cancelled\n"
    "child's error is its CancelledError).  KeyboardInterrupt and\n"
    "SystemExit from a child are re-raised once the others are done.\n"
    "timeout (seconds, None for no deadline): when it passes, the children\n"
    "are cancelled and awaited and TimeoutError is raised.  If the caller\n"
    "is cancelled, the children are cancelled and awaited before\n"
    "CancelledError propagates.  No child outlives the call.");

static PyObject *
race(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
     PyObject *kwnames)
{
    fw_state *st = fw_get_state(module);
    PyObject *timeout = Py_None;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(key, "timeout") != 0) {
            PyErr_Format(PyExc_TypeError,
                         "race() got an unexpected keyword argument '%U'",
                         key);
            return NULL;
        }
        timeout = args[nargs + i];
    }
    double delay;
    int has_timeout = fw_timeout_arg(timeout, &delay);
    if (has_timeout < 0) {
        return NULL;
    }
    if (has_timeout) {
        /* inf never expires: no timer at all. */
        has_timeout = !(isinf(delay) && delay > 0);
        if (isinf(delay) && delay < 0) {
            delay = -1.0;
        }
    }
    if (nargs == 0) {
        PyErr_SetString(PyExc_TypeError,
                        "race() needs at least one awaitable");
        return NULL;
    }
    RaceState *self = PyObject_GC_New(RaceState, st->RaceStateType);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = race_vectorcall;
    self->st = st;
    self->aws = NULL;
    self->loop = self->waiter = self->timer = self->graph_waiter = NULL;
    self->children = NULL;
    self->flags = NULL;
    self->nchildren = self->remaining = 0;
    self->constructing = 0;
    self->direct_task = 0;
    self->next_arg = 0;
    self->value = self->thrown = self->base_exc = NULL;
    self->pend_value = self->pend_exc = NULL;
    self->pend = 0;
    self->timeout = delay;
    self->has_timeout = (char)has_timeout;
    self->phase = PH_NEW;
    self->decision = D_NONE;
    PyObject_GC_Track(self);
    self->aws = PyTuple_New(nargs);
    if (self->aws == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(self->aws, i, Py_NewRef(args[i]));
    }
    PyObject *coro = fw_coro_new(st, &race_coro_def, (PyObject *)self);
    Py_DECREF(self);
    return coro;
}

static PyMethodDef race_methods[] = {
    {"race", (PyCFunction)(void (*)(void))race, METH_FASTCALL | METH_KEYWORDS,
     race_doc},
    {NULL},
};

int
fw_race_init(PyObject *module, fw_state *st)
{
    st->RaceStateType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &race_spec, NULL);
    if (st->RaceStateType == NULL) {
        return -1;
    }
    return PyModule_AddFunctions(module, race_methods);
}

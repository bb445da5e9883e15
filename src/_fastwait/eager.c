/* Eager start: a coroutine's first step run inside a call (gather's
 * eager=True, docs/extras.md), continued as a Task only if it suspends.
 *
 * fw_eager_start() copies the context (the caller's, or a given base),
 * enters the copy, sends None into the coroutine (PyIter_Send: the send
 * protocol of any coroutine asyncio accepts -- native, generator-based on
 * 3.11, Cython, our own FwCoro and wrappers) and leaves the copy again.
 *
 *   - It returned or raised: the outcome goes back to the caller; no Task,
 *     no task factory call, no Task-N number.  KeyboardInterrupt and
 *     SystemExit propagate at once (as from an eager Task's create_task).
 *   - It yielded: a child wrapper (child.c) holding the yielded object is
 *     handed to loop.create_task(wrapper, context=<the copy>).  The Task's
 *     first step receives exactly what the coroutine yielded (a future with
 *     _asyncio_future_blocking set, None for a bare yield, or anything the
 *     Task then rejects as it would have), and handles it as if its own
 *     first step had produced it; then the wrapper forwards to the
 *     coroutine.  Later steps run in the same context copy, so what the
 *     first step set is still visible.
 *
 * Decisions (see also child.c):
 *   - current_task() during the first step is the caller's task: there is
 *     no Task yet, and the public C API cannot fake one (asyncio's eager
 *     tasks report the new Task).
 *   - The step runs with the thread's exception state as it is, like an
 *     eager Task's first step: inside an `except` block of the caller, an
 *     exception the child raises there gets that one as __context__.
 *   - A Task cancelled before its first step (a lazy factory schedules the
 *     step; task.cancel() makes that step a throw()) finds the coroutine
 *     already suspended at its await: it is treated as a Task cancelled
 *     while waiting.  The yielded future (when the Task would have taken
 *     it as its _fut_waiter) is cancelled with the message, as
 *     Task.cancel() does through _fut_waiter, and the CancelledError is
 *     thrown into the coroutine at its await.
 *   - The Task is created through the loop's create_task() method, so
 *     task factories see it; where that would build a plain Task (3.12+,
 *     asyncio's or uvloop's create_task, no task factory, the loop
 *     running) it is built here as tasks.Task(wrapper, loop=, context=,
 *     eager_start=True): started at once, it takes what the first step
 *     yielded inside the call, so the child resumes in the loop iteration
 *     an eager Task's would (not one later).  If that fails the
 *     wrapper is detached from its owner and the coroutine closed as
 *     fw_close_unscheduled() closes (on a RuntimeError: a closed loop); a
 *     suspended coroutine left unclosed is closed when it is collected and
 *     never warns "never awaited".
 */
#include "state.h"

static int eager_task_direct(fw_state *st, PyObject *loop);

/* The coroutine never ran and an error is set: close it so that it does
 * not warn "never awaited" (an error from close() replaces ours, as in
 * fw_close_unscheduled). */
static void
close_unstarted(fw_state *st, PyObject *coro)
{
    PyObject *exc = fw_err_fetch();
    PyObject *r = PyObject_CallMethodNoArgs(coro, st->str_close);
    if (r == NULL) {
        Py_XDECREF(exc);
        return;
    }
    Py_DECREF(r);
    fw_err_restore(exc);
}

int
fw_eager_start(fw_state *st, PyObject *loop, PyObject *coro,
               PyObject *base_ctx, PyObject *owner, Py_ssize_t index,
               fw_finish_fn finish, PyObject **value, PyObject **exc,
               PyObject **task)
{
    *value = NULL;
    *exc = NULL;
    *task = NULL;
    assert(loop != NULL);
    PyObject *ctx = base_ctx != NULL ? PyContext_Copy(base_ctx)
                                     : PyContext_CopyCurrent();
    if (ctx == NULL) {
        close_unstarted(st, coro);
        return -1;
    }
    if (PyContext_Enter(ctx) < 0) {
        close_unstarted(st, coro);
        Py_DECREF(ctx);
        return -1;
    }
    PyObject *res;
    PySendResult r = PyIter_Send(coro, Py_None, &res);
    PyObject *raised = r == PYGEN_ERROR ? fw_err_fetch() : NULL;
    if (PyContext_Exit(ctx) < 0) {
        /* Only if the step left another context entered (C code misusing
         * PyContext_Enter): nothing sensible can be done with its outcome.
         * A suspended coroutine is closed when it is collected. */
        Py_XDECREF(res);
        Py_XDECREF(raised);
        Py_DECREF(ctx);
        return -1;
    }

    if (r == PYGEN_RETURN) {
        Py_DECREF(ctx);
        *value = res;
        return 0;
    }
    if (r == PYGEN_ERROR) {
        Py_DECREF(ctx);
        if (raised == NULL) {
            PyErr_SetString(PyExc_SystemError,
                            "coroutine step failed without an exception");
            return -1;
        }
        if (PyErr_GivenExceptionMatches(raised, PyExc_KeyboardInterrupt) ||
            PyErr_GivenExceptionMatches(raised, PyExc_SystemExit)) {
            fw_err_restore(raised);
            return -1;
        }
        *exc = raised;
        return 0;
    }

    /* Suspended: the rest runs as a Task. */
    PyObject *wrapper = fw_child_new_started(st, coro, owner, index, finish,
                                             res);
    if (wrapper == NULL) {
        fw_close_unscheduled(st, coro);
        Py_DECREF(ctx);
        return -1;
    }
    PyObject *t = NULL; /* stays NULL on an error */
    int direct = eager_task_direct(st, loop);
    if (direct > 0) {
        /* tasks.Task(wrapper, loop=loop, context=ctx, eager_start=True):
         * what the loop's create_task() does, started at once, so the
         * Task takes what the first step yielded now (as an eager Task
         * does) instead of one loop iteration later. */
        PyObject *task_type = fw_task_class(st);
        if (task_type != NULL) {
            PyObject *args[5] = {NULL, wrapper, loop, ctx, Py_True};
            t = PyObject_Vectorcall(task_type, args + 1,
                                    1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                    st->kw_loop_context_eager);
            Py_DECREF(task_type);
        }
    }
    else if (direct == 0) {
        PyObject *stack[3] = {loop, wrapper, ctx};
        t = PyObject_VectorcallMethod(
            st->str_create_task, stack, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
            st->kw_context);
    }
    Py_DECREF(ctx);
    if (t == NULL) {
        fw_child_detach(wrapper);
        fw_close_unscheduled(st, wrapper);
        Py_DECREF(wrapper);
        return -1;
    }
    Py_DECREF(wrapper);
    *task = t;
    return 1;
}

/* Create the Task of a suspended child ourselves, started eagerly?  Only
 * where that is exactly what the loop's create_task() would build (3.12+,
 * whose Task takes eager_start; asyncio's or uvloop's create_task; no task
 * factory) and the loop is running (an eager start enters the Task).  A
 * task factory, eager_task_factory included, gets the call as usual.
 * -1 error, 0/1. */
static int
eager_task_direct(fw_state *st, PyObject *loop)
{
    if (st->kw_loop_context_eager == NULL) {
        return 0;
    }
    int known = fw_loop_type_known(st, Py_TYPE(loop));
    if (known <= 0) {
        return known;
    }
    PyObject *factory = PyObject_CallMethodNoArgs(loop,
                                                  st->str_get_task_factory);
    if (factory == NULL) {
        return -1;
    }
    int none = factory == Py_None;
    Py_DECREF(factory);
    if (!none) {
        return 0;
    }
    PyObject *running = PyObject_CallNoArgs(st->get_running_loop_or_none);
    if (running == NULL) {
        return -1;
    }
    Py_DECREF(running);
    return running == loop;
}

/* ---- fastwait._fastwait._eager_start(), for the tests */

/* finish for _eager_start(on_finish=f): f("returned", value) or
 * f("raised", exc). */
static int
py_finish(PyObject *owner, Py_ssize_t index, PyObject *value, PyObject *exc)
{
    PyObject *res = value != NULL
                        ? PyObject_CallFunction(owner, "sO", "returned", value)
                        : PyObject_CallFunction(owner, "sO", "raised", exc);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static PyObject *
eager_start_py(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"coro", "loop", "context", "on_finish", NULL};
    PyObject *coro, *loop = Py_None, *context = Py_None, *on_finish = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O$OO:_eager_start",
                                     kwlist, &coro, &loop, &context,
                                     &on_finish)) {
        return NULL;
    }
    fw_state *st = fw_get_state(module);
    if (context != Py_None && !PyContext_CheckExact(context)) {
        PyErr_Format(PyExc_TypeError,
                     "context must be a contextvars.Context or None, not %s",
                     Py_TYPE(context)->tp_name);
        return NULL;
    }
    PyObject *owned_loop = NULL;
    if (loop == Py_None) {
        loop = owned_loop = PyObject_CallNoArgs(st->get_running_loop);
        if (loop == NULL) {
            return NULL;
        }
    }
    PyObject *value, *exc, *task;
    int r = fw_eager_start(st, loop, coro, context == Py_None ? NULL : context,
                           on_finish == Py_None ? NULL : on_finish, 0,
                           on_finish == Py_None ? NULL : py_finish, &value,
                           &exc, &task);
    Py_XDECREF(owned_loop);
    if (r < 0) {
        return NULL;
    }
    if (r == 1) {
        return Py_BuildValue("(sN)", "task", task);
    }
    if (value != NULL) {
        return Py_BuildValue("(sN)", "returned", value);
    }
    return Py_BuildValue("(sN)", "raised", exc);
}

static PyMethodDef eager_methods[] = {
    {"_eager_start", (PyCFunction)(void (*)(void))eager_start_py,
     METH_VARARGS | METH_KEYWORDS,
     "_eager_start(coro, loop=None, *, context=None, on_finish=None)\n--\n\n"
     "For tests: run coro's first step now, in a copy of `context` (None:\n"
     "of the current context), and continue it as a Task of `loop` (None:\n"
     "the running loop) if it suspends.  Returns (\"returned\", value),\n"
     "(\"raised\", exception) or (\"task\", task).  `on_finish`, if given,\n"
     "is called as on_finish(\"returned\", value) or\n"
     "on_finish(\"raised\", exc) when a coroutine that suspended finishes\n"
     "in its Task."},
    {NULL},
};

int
fw_eager_init(PyObject *module, fw_state *st)
{
    if (st->eager_task_factory != Py_None) {
        /* 3.12+: Task(coro, *, loop, name, context, eager_start) */
        st->kw_loop_context_eager = Py_BuildValue("(sss)", "loop", "context",
                                                  "eager_start");
        if (st->kw_loop_context_eager == NULL) {
            return -1;
        }
    }
    return PyModule_AddFunctions(module, eager_methods);
}

/* fastwait._fastwait: module definition, state, and the small helpers that
 * every primitive shares (isfuture, _get_loop, call_soon, ...).
 *
 * Everything version-dependent is decided here, once, from Py_Version.
 */
#include "state.h"
#include <math.h>

int
fw_isfuture(fw_state *st, PyObject *obj)
{
    /* asyncio.futures.isfuture():
     *   hasattr(obj.__class__, '_asyncio_future_blocking') and
     *   obj._asyncio_future_blocking is not None */
    PyTypeObject *tp = Py_TYPE(obj);
    if (tp == st->FutureType || tp == st->TaskType) {
        return 1;
    }
    if (tp == &PyCoro_Type) {
        /* The coroutine type has no such attribute (and a failed lookup
         * costs an AttributeError before 3.13). */
        return 0;
    }
    PyObject *attr;
    int r = fw_getattr_optional((PyObject *)tp, st->str_asyncio_future_blocking,
                             &attr);
    if (r <= 0) {
        return r;
    }
    Py_DECREF(attr);
    r = fw_getattr_optional(obj, st->str_asyncio_future_blocking, &attr);
    if (r <= 0) {
        /* hasattr() on the class but not on the instance: the stdlib's
         * attribute access would raise AttributeError here. */
        if (r == 0) {
            PyErr_Format(PyExc_AttributeError,
                         "'%.100s' object has no attribute "
                         "'_asyncio_future_blocking'",
                         tp->tp_name);
        }
        return -1;
    }
    r = attr != Py_None;
    Py_DECREF(attr);
    return r;
}

int
fw_is_future_or_coroutine(fw_state *st, PyObject *obj)
{
    int r = fw_isfuture(st, obj);
    if (r != 0) {
        return r;
    }
    PyObject *res = PyObject_CallOneArg(st->iscoroutine, obj);
    if (res == NULL) {
        return -1;
    }
    r = PyObject_IsTrue(res);
    Py_DECREF(res);
    return r;
}

void
fw_type_error_naming_type(const char *fmt, PyObject *obj)
{
    PyObject *name = PyType_GetName(Py_TYPE(obj));
    if (name != NULL) {
        PyErr_Format(PyExc_TypeError, fmt, name);
        Py_DECREF(name);
    }
}

PyObject *
fw_get_closure_text(PyObject *op, void *closure)
{
    return PyUnicode_FromString((const char *)closure);
}

PyObject *
fw_task_class(fw_state *st)
{
    PyObject *cls = PyDict_GetItemWithError(st->tasks_dict, st->str_Task);
    if (cls == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_AttributeError,
                            "module 'asyncio.tasks' has no attribute 'Task'");
        }
        return NULL;
    }
    return Py_NewRef(cls);
}

int
fw_timeout_arg(PyObject *timeout, double *delay)
{
    *delay = 0.0;
    if (timeout == Py_None) {
        return 0;
    }
    if (PyBool_Check(timeout) ||
        !(PyLong_Check(timeout) || PyFloat_Check(timeout))) {
        fw_type_error_naming_type("timeout must be a number or None, not %U",
                                  timeout);
        return -1;
    }
    if (PyFloat_Check(timeout)) {
        *delay = PyFloat_AS_DOUBLE(timeout);
        if (isnan(*delay)) {
            PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
            return -1;
        }
        return 1;
    }
    *delay = PyLong_AsDouble(timeout);
    if (*delay == -1.0 && PyErr_Occurred()) {
        /* Beyond a double: never, or long ago (_pyextras._check_timeout). */
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        int neg = PyObject_RichCompareBool(timeout, Py_False, Py_LT);
        if (neg < 0) {
            return -1;
        }
        *delay = neg ? -INFINITY : INFINITY;
    }
    return 1;
}

PyObject *
fw_get_loop(fw_state *st, PyObject *fut)
{
    /* asyncio.futures._get_loop(): fut.get_loop() if it exists, else
     * fut._loop. */
    PyTypeObject *tp = Py_TYPE(fut);
    if (tp == st->FutureType || tp == st->TaskType) {
        return fw_fut_call(st, fut, FW_GET_LOOP);
    }
    PyObject *get_loop;
    int r = fw_getattr_optional(fut, st->str_get_loop, &get_loop);
    if (r < 0) {
        return NULL;
    }
    if (r > 0) {
        PyObject *loop = PyObject_CallNoArgs(get_loop);
        Py_DECREF(get_loop);
        return loop;
    }
    return PyObject_GetAttr(fut, st->str_loop_attr);
}

int
fw_call_soon(fw_state *st, PyObject *loop, PyObject *callback,
             PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *stack[6];
    assert(nargs <= 3);
    stack[0] = loop;
    stack[1] = callback;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        stack[2 + i] = args[i];
    }
    stack[2 + nargs] = st->empty_context;
    PyObject *handle = PyObject_VectorcallMethod(
        st->str_call_soon, stack,
        (size_t)(2 + nargs) | PY_VECTORCALL_ARGUMENTS_OFFSET, st->kw_context);
    if (handle == NULL) {
        return -1;
    }
    Py_DECREF(handle);
    return 0;
}

int
fw_add_done_callback(fw_state *st, PyObject *fut, PyObject *callback)
{
    PyObject *r;
    PyTypeObject *tp = Py_TYPE(fut);
    if (tp == st->FutureType || tp == st->TaskType) {
        PyObject *stack[3] = {fut, callback, st->empty_context};
        r = fw_fut_vectorcall(st, FW_ADD_DONE_CALLBACK, stack, 2,
                              st->kw_context);
    }
    else {
        PyObject *stack[2] = {fut, callback};
        r = fw_fut_vectorcall(st, FW_ADD_DONE_CALLBACK, stack, 2, NULL);
    }
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

int
fw_remove_done_callback(fw_state *st, PyObject *fut, PyObject *callback)
{
    PyObject *stack[2] = {fut, callback};
    PyObject *r = fw_fut_vectorcall(st, FW_REMOVE_DONE_CALLBACK, stack, 2,
                                    NULL);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* loop.create_task(coro) failed.  Like ensure_future, close the coroutine
 * when the failure is a RuntimeError (a closed loop), keeping the error;
 * an error from close() replaces it. */
void
fw_close_unscheduled(fw_state *st, PyObject *coro)
{
    if (!PyErr_ExceptionMatches(PyExc_RuntimeError)) {
        return;
    }
    PyObject *exc = fw_err_fetch();
    PyObject *r = PyObject_CallMethodNoArgs(coro, st->str_close);
    if (r == NULL) {
        Py_DECREF(exc);
        return;
    }
    Py_DECREF(r);
    fw_err_restore(exc);
}

/* Python functions with the stdlib's signatures: a call with arguments
 * that do not bind is handed to one of them, so that the TypeError is the
 * interpreter's own, word for word (3.13 adds "Did you mean ...?"). */
static const char signatures_src[] =
    "def gather(*coros_or_futures, return_exceptions=False, limit=None,\n"
    "           timeout=None, eager=False): pass\n"
    "def wait(fs, *, timeout=None, return_when='ALL_COMPLETED'): pass\n"
    "def as_completed(fs, *, timeout=None): pass\n"
    "def shield(arg): pass\n"
    "class _GatheringFuture:\n"
    "    def cancel(self, msg=None): pass\n"
    "cancel = _GatheringFuture.cancel\n"
    "class CompletionQueue:\n"
    "    def __init__(self, aws=(), /): pass\n"
    "    def next(self, timeout=None): pass\n"
    "    def cancel(self, msg=None): pass\n"
    "cq_init = CompletionQueue.__init__\n"
    "cq_next = CompletionQueue.next\n"
    "cq_cancel = CompletionQueue.cancel\n"
    "class Timeout:\n"
    "    def __init__(self, when): return (when,)\n"
    "    def when(self): pass\n"
    "    def reschedule(self, when): return (when,)\n"
    "    def expired(self): pass\n"
    "    def __aenter__(self): pass\n"
    "    def __aexit__(self, exc_type, exc_val, exc_tb):\n"
    "        return (exc_type, exc_val, exc_tb)\n"
    "for _name in ('__init__', 'when', 'reschedule', 'expired',\n"
    "              '__aenter__', '__aexit__'):\n"
    "    globals()['Timeout.' + _name] = getattr(Timeout, _name)\n"
    "def timeout(delay): return (delay,)\n"
    "def timeout_at(when): return (when,)\n"
    "def wait_for(fut, timeout): return (fut, timeout)\n"
    "\n"
    "# asyncio.tasks._cancel_and_wait (3.12's form; 3.11's differs only in\n"
    "# taking the running loop as an argument), for wait_for's rare paths.\n"
    "import functools as _functools\n"
    "from asyncio import events as _events\n"
    "def _release_waiter(waiter, *args):\n"
    "    if not waiter.done():\n"
    "        waiter.set_result(None)\n"
    "async def _cancel_and_wait(fut):\n"
    "    loop = _events.get_running_loop()\n"
    "    waiter = loop.create_future()\n"
    "    cb = _functools.partial(_release_waiter, waiter)\n"
    "    fut.add_done_callback(cb)\n"
    "    try:\n"
    "        fut.cancel()\n"
    "        await waiter\n"
    "    finally:\n"
    "        fut.remove_done_callback(cb)\n"
    "class TaskGroup:\n"
    "    def __init__(self): pass\n"
    "    def __aenter__(self): pass\n"
    "    def __aexit__(self, et, exc, tb): return (et, exc, tb)\n"
    "    def create_task(self, coro, *, name=None, context=None):\n"
    "        return (coro, name, context)\n"
    "tg_init = TaskGroup.__init__\n"
    "tg_aenter = TaskGroup.__aenter__\n"
    "tg_aexit = TaskGroup.__aexit__\n"
    "tg_create_task = TaskGroup.create_task\n";

int
fw_release_waiter(fw_state *st, PyObject *waiter)
{
    int done = fw_fut_bool(st, waiter, FW_DONE);
    if (done != 0) {
        return done < 0 ? -1 : 0;
    }
    PyObject *r = PyObject_CallMethodOneArg(waiter, st->str_set_result,
                                            Py_None);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 1;
}

PyObject *
fw_signature_error(fw_state *st, const char *name, PyObject *self,
                   PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *r = fw_bind(st, name, self, args, nargs, kwnames);
    if (r != NULL) {
        Py_DECREF(r);
        PyErr_Format(PyExc_TypeError, "%s(): bad arguments", name);
    }
    return NULL;
}

PyObject *
fw_bind_call(fw_state *st, const char *name, PyObject *self, PyObject *args,
             PyObject *kwds)
{
    PyObject *func = PyDict_GetItemString(st->signatures, name); /* borrowed */
    if (func == NULL) {
        PyErr_Format(PyExc_SystemError, "no signature for %s", name);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *full = PyTuple_New(n + 1);
    if (full == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(full, 0, Py_NewRef(self));
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(full, i + 1, Py_NewRef(PyTuple_GET_ITEM(args, i)));
    }
    PyObject *r = PyObject_Call(func, full, kwds);
    Py_DECREF(full);
    return r;
}

PyObject *
fw_bind(fw_state *st, const char *name, PyObject *self,
        PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *func = PyDict_GetItemString(st->signatures, name); /* borrowed */
    if (func == NULL) {
        PyErr_Format(PyExc_SystemError, "no signature for %s", name);
        return NULL;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject **stack = PyMem_Malloc((size_t)(1 + nargs + nkw) *
                                    sizeof(PyObject *));
    if (stack == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t n = 0;
    if (self != NULL) {
        stack[n++] = self;
    }
    for (Py_ssize_t i = 0; i < nargs + nkw; i++) {
        stack[n + i] = args[i];
    }
    PyObject *r = PyObject_Vectorcall(func, stack, (size_t)(n + nargs),
                                      kwnames);
    PyMem_Free(stack);
    return r;
}

void
fw_set_stop_iteration(PyObject *value)
{
    if (value == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);
        return;
    }
    /* StopIteration(value) built first: a tuple value must not become
     * the exception's args. */
    PyObject *exc = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (exc != NULL) {
        PyErr_SetObject(PyExc_StopIteration, exc);
        Py_DECREF(exc);
    }
}

void
fw_gc_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (tp->tp_weaklistoffset > 0 &&
        *(PyObject **)((char *)op + tp->tp_weaklistoffset) != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    (void)tp->tp_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

int
fw_register_coroutine_type(PyTypeObject *tp)
{
    PyObject *abc = PyImport_ImportModule("collections.abc");
    if (abc == NULL) {
        return -1;
    }
    PyObject *coroutine = PyObject_GetAttrString(abc, "Coroutine");
    Py_DECREF(abc);
    if (coroutine == NULL) {
        return -1;
    }
    PyObject *res = PyObject_CallMethod(coroutine, "register", "O", tp);
    Py_DECREF(coroutine);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* Is create_task of this loop type one whose behaviour with a factory of
 * None is "Task(coro, loop=loop)"?  asyncio's BaseEventLoop and uvloop's
 * Loop qualify unless a subclass overrides create_task. */
int
fw_loop_type_known(fw_state *st, PyTypeObject *tp)
{
    PyObject *cached = PyDict_GetItemWithError(st->loop_type_cache,
                                               (PyObject *)tp);
    if (cached != NULL) {
        return cached == Py_True;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *meth = PyObject_GetAttr((PyObject *)tp, st->str_create_task);
    if (meth == NULL) {
        return -1;
    }
    int known = meth == st->base_create_task;
    if (!known) {
        /* uvloop.Loop.create_task, if uvloop is imported. */
        PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
        PyObject *uvloop = PyDict_GetItemString(modules, "uvloop");
        if (uvloop != NULL) {
            PyObject *uvloop_loop = PyObject_GetAttrString(uvloop, "Loop");
            if (uvloop_loop == NULL) {
                PyErr_Clear();
            }
            else {
                PyObject *uv_create = PyObject_GetAttr(uvloop_loop,
                                                       st->str_create_task);
                Py_DECREF(uvloop_loop);
                if (uv_create == NULL) {
                    PyErr_Clear();
                }
                else {
                    known = meth == uv_create;
                    Py_DECREF(uv_create);
                }
            }
        }
    }
    Py_DECREF(meth);
    if (PyDict_SetItem(st->loop_type_cache, (PyObject *)tp,
                       known ? Py_True : Py_False) < 0) {
        return -1;
    }
    return known;
}

int
fw_loop_task_factory(fw_state *st, PyObject *loop)
{
    int known = fw_loop_type_known(st, Py_TYPE(loop));
    if (known <= 0) {
        return known < 0 ? -1 : FW_FACTORY_OTHER;
    }
    PyObject *factory = PyObject_CallMethodNoArgs(loop,
                                                  st->str_get_task_factory);
    if (factory == NULL) {
        return -1;
    }
    int kind = factory == Py_None                  ? FW_FACTORY_NONE
               : factory == st->eager_task_factory ? FW_FACTORY_EAGER
                                                   : FW_FACTORY_OTHER;
    Py_DECREF(factory);
    return kind;
}

int
fw_loop_runs_wrappers(fw_state *st, PyObject *loop)
{
    int kind = fw_loop_task_factory(st, loop);
    return kind < 0 ? -1 : kind != FW_FACTORY_OTHER;
}

int
fw_graph_waiter(fw_state *st, PyObject *loop, PyObject **waiter)
{
    *waiter = NULL;
    if (!st->graph_edges) {
        return 0;
    }
    PyObject *task = loop == NULL ? PyObject_CallNoArgs(st->current_task)
                                  : PyObject_CallOneArg(st->current_task,
                                                        loop);
    if (task == NULL) {
        return -1;
    }
    if (task == Py_None) {
        Py_DECREF(task);
    }
    else {
        *waiter = task;
    }
    return 0;
}

int
fw_graph_call(fw_state *st, int discard, PyObject *fut, PyObject *waiter)
{
    PyObject *name = discard ? st->str_awaited_by_discard
                             : st->str_awaited_by_add;
    PyObject *fn = PyDict_GetItemWithError(st->futures_dict, name);
    if (fn == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_AttributeError,
                         "module 'asyncio.futures' has no attribute '%U'",
                         name);
        }
        return -1;
    }
    /* _asyncio's own functions ignore anything but its Future and Task
     * (and subclasses): so do we, without the call. */
    if (fn == (discard ? st->awaited_by_discard_c : st->awaited_by_add_c) &&
        (!PyObject_TypeCheck(fut, st->FutureType) ||
         !PyObject_TypeCheck(waiter, st->FutureType))) {
        return 0;
    }
    Py_INCREF(fn);
    PyObject *args[2] = {fut, waiter};
    PyObject *r = PyObject_Vectorcall(fn, args, 2, NULL);
    Py_DECREF(fn);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Module lifecycle */

static PyObject *
import_attr(const char *module, const char *attr)
{
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_GetAttrString(mod, attr);
    Py_DECREF(mod);
    return res;
}

/* A module global that the stdlib's primitives read at every call
 * (tasks.py, timeouts.py and taskgroups.py call tasks.current_task(),
 * futures.future_add_to_awaited_by(), ...): a program or a test may rebind
 * it, e.g. CPython's tests rebind tasks.current_task to
 * tasks._py_current_task, which on 3.14+ is the only one that sees a
 * pure-Python Task.  fw_late_bound(dict, name) is a callable that looks
 * name up in dict at each call and calls what it finds, so that the state
 * field holding it serves every caller as it is. */
static PyObject *
late_bound_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* self: (module dict, name, module name) */
    PyObject *dict = PyTuple_GET_ITEM(self, 0);
    PyObject *name = PyTuple_GET_ITEM(self, 1);
    PyObject *fn = PyDict_GetItemWithError(dict, name);
    if (fn == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_AttributeError,
                         "module '%U' has no attribute '%U'",
                         PyTuple_GET_ITEM(self, 2), name);
        }
        return NULL;
    }
    Py_INCREF(fn);
    PyObject *res = PyObject_Vectorcall(fn, args, nargs, NULL);
    Py_DECREF(fn);
    return res;
}

static PyMethodDef late_bound_def = {
    "late_bound", (PyCFunction)(void (*)(void))late_bound_call, METH_FASTCALL,
    NULL};

PyObject *
fw_late_bound(const char *module, const char *name)
{
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *modname = PyModule_GetNameObject(mod);
    PyObject *self = modname == NULL ? NULL
                                     : Py_BuildValue("(OsO)",
                                                     PyModule_GetDict(mod),
                                                     name, modname);
    Py_XDECREF(modname);
    Py_DECREF(mod);
    if (self == NULL) {
        return NULL;
    }
    PyObject *res = PyCFunction_NewEx(&late_bound_def, self, NULL);
    Py_DECREF(self);
    return res;
}

static int
module_exec(PyObject *module)
{
    fw_state *st = fw_get_state(module);

#define FW_INTERN(field, text)                                          \
    if ((st->field = PyUnicode_InternFromString(text)) == NULL) {       \
        return -1;                                                      \
    }
    FW_NAMES(FW_INTERN)
#undef FW_INTERN

    if ((st->kw_msg = Py_BuildValue("(s)", "msg")) == NULL ||
        (st->kw_context = Py_BuildValue("(s)", "context")) == NULL ||
        (st->kw_loop = Py_BuildValue("(s)", "loop")) == NULL ||
        (st->kw_name = Py_BuildValue("(s)", "name")) == NULL ||
        (st->kw_name_context = Py_BuildValue("(ss)", "name", "context")) ==
            NULL) {
        return -1;
    }

    PyObject *future = import_attr("asyncio", "Future");
    PyObject *task = import_attr("asyncio", "Task");
    if (future == NULL || task == NULL) {
        Py_XDECREF(future);
        Py_XDECREF(task);
        return -1;
    }
    if (!PyType_Check(future) || !PyType_Check(task)) {
        PyErr_SetString(PyExc_ImportError,
                        "fastwait needs asyncio's C Future and Task types "
                        "(the _asyncio accelerator module)");
        Py_DECREF(future);
        Py_DECREF(task);
        return -1;
    }
    st->FutureType = (PyTypeObject *)future;
    st->TaskType = (PyTypeObject *)task;

    st->method_names[FW_DONE] = st->str_done;
    st->method_names[FW_CANCELLED] = st->str_cancelled;
    st->method_names[FW_EXCEPTION] = st->str_exception;
    st->method_names[FW_RESULT] = st->str_result;
    st->method_names[FW_GET_LOOP] = st->str_get_loop;
    st->method_names[FW_ADD_DONE_CALLBACK] = st->str_add_done_callback;
    st->method_names[FW_REMOVE_DONE_CALLBACK] = st->str_remove_done_callback;
    for (int m = 0; m < FW_NMETHODS; m++) {
        st->future_methods[m] = PyObject_GetAttr(future,
                                                 st->method_names[m]);
        st->task_methods[m] = PyObject_GetAttr(task, st->method_names[m]);
        if (st->future_methods[m] == NULL || st->task_methods[m] == NULL) {
            return -1;
        }
    }

    PyObject *flags = import_attr("sys", "flags");
    if (flags == NULL) {
        return -1;
    }
    PyObject *optimize = PyObject_GetAttrString(flags, "optimize");
    Py_DECREF(flags);
    if (optimize == NULL) {
        return -1;
    }
    st->optimize = PyObject_IsTrue(optimize);
    Py_DECREF(optimize);

    int v312 = Py_Version >= 0x030C0000;
    st->gather_done_shortcut = v312;
    st->as_completed_eager = Py_Version >= 0x030D0000;

    if ((st->CancelledError = import_attr("asyncio", "CancelledError")) ==
            NULL ||
        (st->get_event_loop = import_attr(
             "asyncio.events", v312 ? "get_event_loop" : "_get_event_loop")) ==
            NULL ||
        (st->get_running_loop_or_none =
             import_attr("asyncio.events", "_get_running_loop")) == NULL ||
        (st->ensure_future = import_attr(
             "asyncio.tasks", v312 ? "ensure_future" : "_ensure_future")) ==
            NULL) {
        return -1;
    }
    if (Py_Version < 0x030D0000) {
        if ((st->set_task_name = import_attr("asyncio.tasks",
                                             "_set_task_name")) == NULL) {
            return -1;
        }
    }
    else {
        st->set_task_name = Py_NewRef(Py_None);
    }
    if (v312) {
        if ((st->eager_task_factory =
                 import_attr("asyncio.tasks", "eager_task_factory")) == NULL) {
            return -1;
        }
    }
    else {
        st->eager_task_factory = Py_NewRef(Py_None);
    }
    if ((st->get_running_loop =
             import_attr("asyncio.events", "get_running_loop")) == NULL ||
        (st->iscoroutine = import_attr("asyncio.coroutines", "iscoroutine")) ==
            NULL ||
        (st->current_task = fw_late_bound("asyncio.tasks", "current_task")) ==
            NULL ||
        (st->tasks_dict = import_attr("asyncio.tasks", "__dict__")) == NULL ||
        (st->str_Task = PyUnicode_InternFromString("Task")) == NULL ||
        (st->QueueEmpty = import_attr("asyncio", "QueueEmpty")) == NULL ||
        (st->isawaitable = import_attr("inspect", "isawaitable")) == NULL ||
        (st->warn_unawaited =
             import_attr("warnings", "_warn_unawaited_coroutine")) == NULL ||
        (st->origin_depth = import_attr(
             "sys", "get_coroutine_origin_tracking_depth")) == NULL ||
        (st->FIRST_COMPLETED = import_attr("asyncio", "FIRST_COMPLETED")) ==
            NULL ||
        (st->FIRST_EXCEPTION = import_attr("asyncio", "FIRST_EXCEPTION")) ==
            NULL ||
        (st->ALL_COMPLETED = import_attr("asyncio", "ALL_COMPLETED")) ==
            NULL) {
        return -1;
    }
    PyObject *base_loop = import_attr("asyncio.base_events", "BaseEventLoop");
    if (base_loop == NULL) {
        return -1;
    }
    st->base_create_task = PyObject_GetAttr(base_loop, st->str_create_task);
    st->base_call_at = PyObject_GetAttr(base_loop, st->str_call_at);
    st->base_get_task_factory = PyObject_GetAttr(base_loop,
                                                 st->str_get_task_factory);
    Py_DECREF(base_loop);
    if (st->base_create_task == NULL || st->base_call_at == NULL ||
        st->base_get_task_factory == NULL ||
        (st->round = import_attr("builtins", "round")) == NULL ||
        (st->ExceptionGroup = import_attr("builtins", "ExceptionGroup")) ==
            NULL) {
        return -1;
    }
    st->wait_for_own_task = !v312;
    st->graph_edges = Py_Version >= 0x030E0000;
    st->shield_marks_retrieved = !st->graph_edges;
    /* gh-158004: first in 3.14.9 and 3.15.1 (docs/patch-releases.md). */
    st->as_completed_requeue =
        (Py_Version >= 0x030E0900 && Py_Version < 0x030F0000) ||
        Py_Version >= 0x030F0100;
    if (st->graph_edges) {
        /* Read from asyncio.futures at each use, as tasks.py and
         * taskgroups.py read futures.future_add_to_awaited_by (CPython's
         * tests rebind it to the pure-Python version). */
        if ((st->futures_dict = import_attr("asyncio.futures", "__dict__")) ==
                NULL ||
            (st->str_awaited_by_add = PyUnicode_InternFromString(
                 "future_add_to_awaited_by")) == NULL ||
            (st->str_awaited_by_discard = PyUnicode_InternFromString(
                 "future_discard_from_awaited_by")) == NULL ||
            (st->awaited_by_add_c = import_attr(
                 "_asyncio", "future_add_to_awaited_by")) == NULL ||
            (st->awaited_by_discard_c = import_attr(
                 "_asyncio", "future_discard_from_awaited_by")) == NULL ||
            (st->awaited_by_add = fw_late_bound(
                 "asyncio.futures", "future_add_to_awaited_by")) == NULL ||
            (st->awaited_by_discard = fw_late_bound(
                 "asyncio.futures", "future_discard_from_awaited_by")) ==
                NULL) {
            return -1;
        }
    }
    st->signatures = PyDict_New();
    if (st->signatures == NULL ||
        PyDict_SetItemString(st->signatures, "__builtins__",
                             PyEval_GetBuiltins()) < 0 ||
        PyDict_SetItemString(st->signatures, "__name__",
                             PyUnicode_FromString("fastwait._fastwait")) < 0) {
        return -1;
    }
    PyObject *ran = PyRun_String(signatures_src, Py_file_input,
                                 st->signatures, st->signatures);
    if (ran == NULL) {
        return -1;
    }
    Py_DECREF(ran);
    st->cancel_and_wait = PyDict_GetItemString(st->signatures,
                                               "_cancel_and_wait");
    if (st->cancel_and_wait == NULL) {
        PyErr_SetString(PyExc_SystemError, "no _cancel_and_wait");
        return -1;
    }
    Py_INCREF(st->cancel_and_wait);
    if ((st->loop_type_cache = PyDict_New()) == NULL ||
        (st->empty_context = PyContext_New()) == NULL) {
        return -1;
    }

    if (fw_child_init(module, st) < 0 || fw_gather_init(module, st) < 0 ||
        fw_coro_init(module, st) < 0 || fw_wait_init(module, st) < 0 ||
        fw_completion_init(module, st) < 0 ||
        fw_as_completed_init(module, st) < 0 ||
        fw_timeout_init(module, st) < 0 || fw_wait_for_init(module, st) < 0 ||
        fw_shield_init(module, st) < 0 || fw_taskgroup_init(module, st) < 0 ||
        fw_eager_init(module, st) < 0 || fw_race_init(module, st) < 0) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    fw_state *st = fw_get_state(module);
    Py_VISIT(st->ChildType);
    Py_VISIT(st->GatheringFutureType);
    Py_VISIT(st->GatherCoreType);
    Py_VISIT(st->FutureType);
    Py_VISIT(st->TaskType);
    Py_VISIT(st->CancelledError);
    Py_VISIT(st->get_event_loop);
    Py_VISIT(st->get_running_loop_or_none);
    Py_VISIT(st->ensure_future);
    Py_VISIT(st->eager_task_factory);
    Py_VISIT(st->base_create_task);
    Py_VISIT(st->base_get_task_factory);
    Py_VISIT(st->loop_type_cache);
    Py_VISIT(st->signatures);
    Py_VISIT(st->empty_context);
    Py_VISIT(st->CoroType);
    Py_VISIT(st->WaitStateType);
    Py_VISIT(st->get_running_loop);
    Py_VISIT(st->iscoroutine);
    Py_VISIT(st->current_task);
    Py_VISIT(st->tasks_dict);
    Py_VISIT(st->str_Task);
    Py_VISIT(st->QueueEmpty);
    Py_VISIT(st->isawaitable);
    Py_VISIT(st->AsCompletedGenType);
    Py_VISIT(st->AsCompletedIterType);
    Py_VISIT(st->AsCompletedWaitType);
    Py_VISIT(st->ShieldCallbackType);
    Py_VISIT(st->shield_inner_source);
    Py_VISIT(st->shield_outer_source);
    Py_VISIT(st->CompletionQueueType);
    Py_VISIT(st->CompletionWaitType);
    Py_VISIT(st->warn_unawaited);
    Py_VISIT(st->origin_depth);
    Py_VISIT(st->FIRST_COMPLETED);
    Py_VISIT(st->FIRST_EXCEPTION);
    Py_VISIT(st->ALL_COMPLETED);
    Py_VISIT(st->TimeoutType);
    Py_VISIT(st->SchedulerType);
    Py_VISIT(st->ReleaseType);
    Py_VISIT(st->WaitForStateType);
    Py_VISIT(st->cancel_and_wait);
    Py_VISIT(st->base_call_at);
    Py_VISIT(st->round);
    Py_VISIT(st->ExceptionGroup);
    Py_VISIT(st->task_cancel);
    Py_VISIT(st->task_cancelling);
    Py_VISIT(st->task_uncancel);
    Py_VISIT(st->schedulers);
    Py_VISIT(st->timer_loop_types);
    Py_VISIT(st->base_time);
    Py_VISIT(st->base_time_code);
    Py_VISIT(st->base_events_dict);
    Py_VISIT(st->time_module);
    Py_VISIT(st->time_dict);
    Py_VISIT(st->time_monotonic);
    Py_VISIT(st->clock_type);
    Py_VISIT(st->TaskGroupType);
    Py_VISIT(st->TaskGroupCallbackType);
    Py_VISIT(st->TaskGroupSlotWrapperType);
    Py_VISIT(st->RaceStateType);
    Py_VISIT(st->set_task_name);
    Py_VISIT(st->awaited_by_add);
    Py_VISIT(st->awaited_by_discard);
    Py_VISIT(st->awaited_by_add_c);
    Py_VISIT(st->awaited_by_discard_c);
    Py_VISIT(st->futures_dict);
    Py_VISIT(st->str_awaited_by_add);
    Py_VISIT(st->str_awaited_by_discard);
    Py_VISIT(st->shield_clear_source);
    for (int m = 0; m < FW_NMETHODS; m++) {
        Py_VISIT(st->future_methods[m]);
        Py_VISIT(st->task_methods[m]);
    }
    return 0;
}

static int
module_clear(PyObject *module)
{
    fw_state *st = fw_get_state(module);
    Py_CLEAR(st->ChildType);
    Py_CLEAR(st->GatheringFutureType);
    Py_CLEAR(st->GatherCoreType);
    Py_CLEAR(st->FutureType);
    Py_CLEAR(st->TaskType);
    Py_CLEAR(st->CancelledError);
    Py_CLEAR(st->get_event_loop);
    Py_CLEAR(st->get_running_loop_or_none);
    Py_CLEAR(st->ensure_future);
    Py_CLEAR(st->eager_task_factory);
    Py_CLEAR(st->base_create_task);
    Py_CLEAR(st->base_get_task_factory);
    Py_CLEAR(st->loop_type_cache);
    Py_CLEAR(st->signatures);
    Py_CLEAR(st->empty_context);
    Py_CLEAR(st->CoroType);
    Py_CLEAR(st->WaitStateType);
    Py_CLEAR(st->get_running_loop);
    Py_CLEAR(st->iscoroutine);
    Py_CLEAR(st->current_task);
    Py_CLEAR(st->tasks_dict);
    Py_CLEAR(st->str_Task);
    Py_CLEAR(st->QueueEmpty);
    Py_CLEAR(st->isawaitable);
    Py_CLEAR(st->AsCompletedGenType);
    Py_CLEAR(st->AsCompletedIterType);
    Py_CLEAR(st->AsCompletedWaitType);
    Py_CLEAR(st->ShieldCallbackType);
    Py_CLEAR(st->shield_inner_source);
    Py_CLEAR(st->shield_outer_source);
    Py_CLEAR(st->CompletionQueueType);
    Py_CLEAR(st->CompletionWaitType);
    Py_CLEAR(st->warn_unawaited);
    Py_CLEAR(st->origin_depth);
    Py_CLEAR(st->FIRST_COMPLETED);
    Py_CLEAR(st->FIRST_EXCEPTION);
    Py_CLEAR(st->ALL_COMPLETED);
    Py_CLEAR(st->TimeoutType);
    Py_CLEAR(st->SchedulerType);
    Py_CLEAR(st->ReleaseType);
    Py_CLEAR(st->WaitForStateType);
    Py_CLEAR(st->cancel_and_wait);
    Py_CLEAR(st->base_call_at);
    Py_CLEAR(st->round);
    Py_CLEAR(st->ExceptionGroup);
    Py_CLEAR(st->task_cancel);
    Py_CLEAR(st->task_cancelling);
    Py_CLEAR(st->task_uncancel);
    Py_CLEAR(st->schedulers);
    Py_CLEAR(st->timer_loop_types);
    Py_CLEAR(st->base_time);
    Py_CLEAR(st->base_time_code);
    Py_CLEAR(st->base_events_dict);
    Py_CLEAR(st->time_module);
    Py_CLEAR(st->time_dict);
    Py_CLEAR(st->time_monotonic);
    Py_CLEAR(st->str_monotonic);
    Py_CLEAR(st->clock_type);
    fw_timeout_free_list_clear(st);
    st->last_scheduler = NULL;
    Py_CLEAR(st->TaskGroupType);
    Py_CLEAR(st->TaskGroupCallbackType);
    Py_CLEAR(st->TaskGroupSlotWrapperType);
    Py_CLEAR(st->RaceStateType);
    Py_CLEAR(st->set_task_name);
    Py_CLEAR(st->awaited_by_add);
    Py_CLEAR(st->awaited_by_discard);
    Py_CLEAR(st->awaited_by_add_c);
    Py_CLEAR(st->awaited_by_discard_c);
    Py_CLEAR(st->futures_dict);
    Py_CLEAR(st->str_awaited_by_add);
    Py_CLEAR(st->str_awaited_by_discard);
    Py_CLEAR(st->shield_clear_source);
    for (int m = 0; m < FW_NMETHODS; m++) {
        Py_CLEAR(st->future_methods[m]);
        Py_CLEAR(st->task_methods[m]);
    }
    Py_CLEAR(st->kw_msg);
    Py_CLEAR(st->kw_context);
    Py_CLEAR(st->kw_loop);
    Py_CLEAR(st->kw_name);
    Py_CLEAR(st->kw_name_context);
    Py_CLEAR(st->kw_loop_name_context);
    Py_CLEAR(st->kw_loop_context_eager);
#define FW_CLEAR(field, text) Py_CLEAR(st->field);
    FW_NAMES(FW_CLEAR)
#undef FW_CLEAR
    return 0;
}

static void
module_free(void *module)
{
    (void)module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(module_doc,
             "Native implementations of asyncio's waiting primitives.\n"
             "\n"
             "Use the fastwait package; this module is its C core.");

PyModuleDef fw_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastwait._fastwait",
    .m_doc = module_doc,
    .m_size = sizeof(fw_state),
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__fastwait(void)
{
    return PyModuleDef_Init(&fw_module_def);
}

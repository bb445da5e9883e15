/* FwCoro: a native coroutine object (see state.h).
 *
 * The stdlib's wait() is an `async def`; so are the methods and helpers the
 * later primitives need.  FwCoro gives a C state machine the same outside:
 * __await__, send/throw/close and am_send (asyncio.Task drives it through
 * am_send), the "coroutine ... was never awaited" warning when it is dropped
 * unstarted, and the close-on-finalize of a suspended coroutine.  It awaits
 * what its step function returns the way `await` does: through the
 * awaitable's __await__ iterator.
 */
#include "state.h"

typedef struct {
    PyObject_HEAD
    const fw_coro_def *def;
    PyObject *state;    /* the primitive's state; NULL once finished */
    PyObject *awaiting; /* __await__ iterator of what we wait for */
    PyObject *origin;   /* cr_origin: NULL unless tracking was on */
    char started;
    char finished;
    char running;
} FwCoro;

#define Coro_CAST(op) ((FwCoro *)(op))

/* cr_origin as CPython computes it for an `async def` coroutine: the
 * (filename, lineno, funcname) of up to `depth` frames, innermost first,
 * starting at the frame that called us (a C function has no frame, so the
 * first is the caller's, as it is for a coroutine function). */
static PyObject *
compute_origin(int depth)
{
    PyFrameObject *top = PyEval_GetFrame(); /* borrowed */
    int n = 0;
    Py_XINCREF(top);
    PyFrameObject *f = top;
    while (f != NULL && n < depth) {
        n++;
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
    PyObject *origin = PyTuple_New(n);
    if (origin == NULL) {
        return NULL;
    }
    f = (PyFrameObject *)Py_XNewRef(top);
    for (int i = 0; i < n; i++) {
        PyCodeObject *code = PyFrame_GetCode(f);
        PyObject *filename = PyObject_GetAttrString((PyObject *)code,
                                                    "co_filename");
        PyObject *name = filename != NULL
                             ? PyObject_GetAttrString((PyObject *)code,
                                                      "co_name")
                             : NULL;
        Py_DECREF(code);
        PyObject *info = name != NULL
                             ? Py_BuildValue("OiO", filename,
                                             PyFrame_GetLineNumber(f), name)
                             : NULL;
        Py_XDECREF(filename);
        Py_XDECREF(name);
        if (info == NULL) {
            Py_DECREF(f);
            Py_DECREF(origin);
            return NULL;
        }
        PyTuple_SET_ITEM(origin, i, info);
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
    return origin;
}

PyObject *
fw_coro_new(fw_state *st, const fw_coro_def *def, PyObject *state)
{
    /* sys.get_coroutine_origin_tracking_depth(): 0 unless someone (asyncio's
     * debug mode) turned tracking on; the frames are walked only then. */
    PyObject *origin = NULL;
    PyObject *d = PyObject_CallNoArgs(st->origin_depth);
    if (d == NULL) {
        return NULL;
    }
    long depth = PyLong_AsLong(d);
    Py_DECREF(d);
    if (depth == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (depth > 0) {
        origin = compute_origin(depth > INT_MAX ? INT_MAX : (int)depth);
        if (origin == NULL) {
            return NULL;
        }
    }
    FwCoro *self = PyObject_GC_New(FwCoro, st->CoroType);
    if (self == NULL) {
        Py_XDECREF(origin);
        return NULL;
    }
    self->def = def;
    self->state = Py_NewRef(state);
    self->awaiting = NULL;
    self->origin = origin;
    self->started = 0;
    self->finished = 0;
    self->running = 0;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* Call the step function until it awaits something not yet done, returns
 * or raises.  `exc` (owned, may be NULL) is passed to the first step. */
PyObject *
fw_get_awaitable_iter(PyObject *aw)
{
    if (PyCoro_CheckExact(aw)) {
        return Py_NewRef(aw); /* sendable as it is (am_send) */
    }
    PyTypeObject *tp = Py_TYPE(aw);
    unaryfunc am_await = tp->tp_as_async != NULL ? tp->tp_as_async->am_await
                                                 : NULL;
    if (am_await != NULL) {
        PyObject *it = am_await(aw);
        if (it == NULL) {
            return NULL;
        }
        if (PyCoro_CheckExact(it) || !PyIter_Check(it)) {
            /* The interpreter's words: 3.15 names both types. */
#if PY_VERSION_HEX >= 0x030F0000
            PyErr_Format(PyExc_TypeError,
                         "%T.__await__() must return an iterator, not %T",
                         aw, it);
#else
            if (PyCoro_CheckExact(it)) {
                PyErr_SetString(PyExc_TypeError,
                                "__await__() returned a coroutine");
            }
            else {
                PyErr_Format(PyExc_TypeError,
                             "__await__() returned non-iterator of type "
                             "'%.100s'",
                             Py_TYPE(it)->tp_name);
            }
#endif
            Py_DECREF(it);
            return NULL;
        }
        return it;
    }
    if (PyGen_Check(aw)) {
        /* A @types.coroutine generator (CO_ITERABLE_COROUTINE) is its own
         * iterator. */
        PyObject *code = PyObject_GetAttrString(aw, "gi_code");
        PyObject *flags = code != NULL
                              ? PyObject_GetAttrString(code, "co_flags")
                              : NULL;
        Py_XDECREF(code);
        if (flags == NULL) {
            return NULL;
        }
        long f = PyLong_AsLong(flags);
        Py_DECREF(flags);
        if (f == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (f & CO_ITERABLE_COROUTINE) {
            return Py_NewRef(aw);
        }
    }
#if PY_VERSION_HEX >= 0x030E0000
    PyErr_Format(PyExc_TypeError, "'%.100s' object can't be awaited",
                 tp->tp_name);
#else
    PyErr_Format(PyExc_TypeError,
                 "object %.100s can't be used in 'await' expression",
                 tp->tp_name);
#endif
    return NULL;
}

/* One step: the primitive's step function, given what the last await
 * returned (`value`, owned, or NULL) or raised (`exc`, owned, or NULL). */
static PyObject *
coro_step(FwCoro *self, PyObject *value, PyObject *exc, PyObject **result)
{
    if (self->def->vstep != NULL) {
        return self->def->vstep(self->state, value, exc, result);
    }
    Py_XDECREF(value);
    return self->def->step(self->state, exc, result);
}

/* Call the step function until it awaits something not yet done, returns
 * or raises.  `value`/`exc` (owned, may be NULL) go to the first step. */
static PySendResult
coro_drive(FwCoro *self, PyObject *value, PyObject *exc, PyObject **presult)
{
    for (;;) {
        PyObject *result = NULL;
        PyObject *aw = coro_step(self, value, exc, &result);
        value = NULL;
        exc = NULL;
        if (aw == NULL) {
            self->finished = 1;
            self->running = 0;
            Py_CLEAR(self->state);
            *presult = result;
            return result != NULL ? PYGEN_RETURN : PYGEN_ERROR;
        }
        PyObject *it = fw_get_awaitable_iter(aw);
        Py_DECREF(aw);
        if (it == NULL) {
            exc = fw_err_fetch();
            continue;
        }
        PyObject *yielded;
        PySendResult r = PyIter_Send(it, Py_None, &yielded);
        if (r == PYGEN_NEXT) {
            self->awaiting = it;
            self->running = 0;
            *presult = yielded;
            return PYGEN_NEXT;
        }
        Py_DECREF(it);
        if (r == PYGEN_RETURN) {
            value = yielded;
        }
        else {
            exc = fw_err_fetch();
        }
    }
}

static int
coro_enter(FwCoro *self)
{
    if (self->running) {
        PyErr_SetString(PyExc_ValueError, "coroutine already executing");
        return -1;
    }
    if (self->finished) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot reuse already awaited coroutine");
        return -1;
    }
    self->running = 1;
    return 0;
}

static PySendResult
coro_am_send(PyObject *op, PyObject *arg, PyObject **presult)
{
    FwCoro *self = Coro_CAST(op);
    *presult = NULL;
    if (coro_enter(self) < 0) {
        return PYGEN_ERROR;
    }
    PyObject *exc = NULL, *value = NULL;
    if (self->awaiting != NULL) {
        PySendResult r = PyIter_Send(self->awaiting, arg, &value);
        if (r == PYGEN_NEXT) {
            self->running = 0;
            *presult = value;
            return PYGEN_NEXT;
        }
        Py_CLEAR(self->awaiting);
        if (r != PYGEN_RETURN) {
            value = NULL;
            exc = fw_err_fetch();
        }
    }
    else if (!self->started) {
        if (arg != Py_None) {
            self->running = 0;
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started "
                            "coroutine");
            return PYGEN_ERROR;
        }
        self->started = 1;
    }
    return coro_drive(self, value, exc, presult);
}

PyObject *
fw_make_thrown(PyObject *const *args, Py_ssize_t nargs)
{
    if (fw_check_throw_nargs(nargs) < 0) {
        return NULL;
    }
    if (nargs > 1 && Py_Version >= 0x030C0000 &&
        PyErr_WarnEx(PyExc_DeprecationWarning,
                     "the (type, exc, tb) signature of throw() is deprecated, "
                     "use the single-arg signature instead.",
                     1) < 0) {
        return NULL;
    }
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : Py_None;
    PyObject *tb = nargs > 2 ? args[2] : Py_None;
    if (tb != Py_None && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError,
                        "throw() third argument must be a traceback object");
        return NULL;
    }
    PyObject *exc;
    if (PyExceptionInstance_Check(typ)) {
        if (val != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "instance exception may not have a separate "
                            "value");
            return NULL;
        }
        exc = Py_NewRef(typ);
    }
    else if (PyExceptionClass_Check(typ)) {
        if (PyExceptionInstance_Check(val) &&
            PyObject_TypeCheck(val, (PyTypeObject *)typ)) {
            exc = Py_NewRef(val);
        }
        else if (val == Py_None) {
            exc = PyObject_CallNoArgs(typ);
        }
        else if (PyTuple_Check(val)) {
            exc = PyObject_Call(typ, val, NULL);
        }
        else {
            exc = PyObject_CallOneArg(typ, val);
        }
        if (exc == NULL) {
            return NULL;
        }
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "exceptions must be classes or instances deriving from "
                     "BaseException, not %.200s",
                     Py_TYPE(typ)->tp_name);
        return NULL;
    }
    if (tb != Py_None && PyException_SetTraceback(exc, tb) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

/* What we await gets a thrown exception first, as `await` delegates
 * (PEP 380): it may handle it and yield again (returned, new reference),
 * return (*pvalue set) or raise (*pexc replaced); NULL when the exception
 * comes back to our step.  An awaited iterator without throw() leaves the
 * exception to us. */
static PyObject *
throw_awaiting(FwCoro *self, PyObject **pexc, PyObject **pvalue)
{
    fw_state *st = fw_state_from_type(Py_TYPE(self));
    PyObject *it = self->awaiting;
    self->awaiting = NULL;
    PyObject *meth;
    if (fw_getattr_optional(it, st->str_throw, &meth) < 0) {
        Py_DECREF(it);
        Py_SETREF(*pexc, fw_err_fetch());
        return NULL;
    }
    if (meth == NULL) {
        Py_DECREF(it);
        return NULL;
    }
    PyObject *yielded = PyObject_CallOneArg(meth, *pexc);
    Py_DECREF(meth);
    if (yielded != NULL) {
        self->awaiting = it;
        Py_CLEAR(*pexc);
        return yielded;
    }
    Py_DECREF(it);
    Py_CLEAR(*pexc);
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyObject *stop = fw_err_fetch();
        *pvalue = PyObject_GetAttrString(stop, "value");
        Py_DECREF(stop);
        if (*pvalue == NULL) {
            *pexc = fw_err_fetch();
        }
        return NULL;
    }
    *pexc = fw_err_fetch();
    return NULL;
}

/* close() (or a thrown GeneratorExit) closes what we await first; an error
 * from its close() replaces the GeneratorExit.  Returns the exception for
 * our step (owned; `exc` is consumed). */
static PyObject *
close_awaiting(FwCoro *self, PyObject *exc)
{
    fw_state *st = fw_state_from_type(Py_TYPE(self));
    PyObject *it = self->awaiting;
    self->awaiting = NULL;
    PyObject *meth;
    int found = fw_getattr_optional(it, st->str_close, &meth);
    Py_DECREF(it);
    if (found > 0) {
        PyObject *r = PyObject_CallNoArgs(meth);
        Py_DECREF(meth);
        if (r != NULL) {
            Py_DECREF(r);
            return exc;
        }
    }
    else if (found == 0) {
        return exc;
    }
    Py_DECREF(exc);
    return fw_err_fetch();
}

/* Finished without running (closed or thrown into before the first step),
 * or closed again: the state goes, told first if it asked to be. */
static void
coro_discard(FwCoro *self)
{
    int unstarted = !self->finished && !self->started;
    self->finished = 1;
    if (unstarted && self->state != NULL && self->def->discard != NULL) {
        self->def->discard(self->state);
    }
    Py_CLEAR(self->state);
}

static PyObject *
coro_throw(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    FwCoro *self = Coro_CAST(op);
    PyObject *exc = fw_make_thrown(args, nargs);
    if (exc == NULL) {
        return NULL;
    }
    if (self->finished || !self->started) {
        /* A finished or never started coroutine raises it right away;
         * the latter is finished by it (and does not warn any more). */
        if (!self->running) {
            coro_discard(self);
        }
        fw_err_restore(exc);
        return NULL;
    }
    if (coro_enter(self) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    PyObject *value = NULL;
    if (self->awaiting != NULL) {
        if (PyErr_GivenExceptionMatches(exc, PyExc_GeneratorExit)) {
            exc = close_awaiting(self, exc);
        }
        else {
            PyObject *yielded = throw_awaiting(self, &exc, &value);
            if (yielded != NULL) {
                self->running = 0;
                return yielded;
            }
        }
    }
    PyObject *result;
    PySendResult r = coro_drive(self, value, exc, &result);
    return fw_send_result(r, result);
}

static PyObject *
coro_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    FwCoro *self = Coro_CAST(op);
    if (self->finished || !self->started) {
        coro_discard(self);
        Py_RETURN_NONE;
    }
    if (coro_enter(self) < 0) {
        return NULL;
    }
    PyObject *exc = PyObject_CallNoArgs(PyExc_GeneratorExit);
    if (exc == NULL) {
        self->running = 0;
        return NULL;
    }
    if (self->awaiting != NULL) {
        exc = close_awaiting(self, exc);
    }
    PyObject *result;
    PySendResult r = coro_drive(self, NULL, exc, &result);
    if (r == PYGEN_NEXT) {
        Py_DECREF(result);
        Py_CLEAR(self->awaiting);
        self->finished = 1;
        Py_CLEAR(self->state);
        PyErr_SetString(PyExc_RuntimeError, "coroutine ignored GeneratorExit");
        return NULL;
    }
    if (r == PYGEN_RETURN) {
        Py_DECREF(result);
        Py_RETURN_NONE;
    }
    if (PyErr_ExceptionMatches(PyExc_GeneratorExit) ||
        PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return NULL;
}

static void
coro_finalize(PyObject *op)
{
    FwCoro *self = Coro_CAST(op);
    if (self->finished) {
        return;
    }
    PyObject *exc = fw_err_fetch();
    if (!self->started) {
        /* Like a dropped `async def` coroutine. */
        fw_state *st = fw_state_from_type(Py_TYPE(op));
        /* At interpreter shutdown the module state may be cleared before
         * the last coroutine goes: then there is no one to warn. */
        if (st->warn_unawaited != NULL) {
            PyObject *r = PyObject_CallOneArg(st->warn_unawaited, op);
            if (r == NULL) {
                PyErr_WriteUnraisable(op);
            }
            Py_XDECREF(r);
        }
        self->finished = 1;
    }
    else {
        PyObject *r = coro_close(op, NULL);
        if (r == NULL) {
            PyErr_WriteUnraisable(op);
        }
        Py_XDECREF(r);
    }
    if (exc != NULL) {
        fw_err_restore(exc);
    }
}

static PyObject *
coro_get_qualname(PyObject *op, void *closure)
{
    return PyUnicode_FromString(Coro_CAST(op)->def->name);
}

/* __name__: the last component of the qualified name. */
static PyObject *
coro_get_name(PyObject *op, void *closure)
{
    const char *name = Coro_CAST(op)->def->name;
    const char *dot = strrchr(name, '.');
    return PyUnicode_FromString(dot != NULL ? dot + 1 : name);
}

static PyObject *
coro_get_running(PyObject *op, void *closure)
{
    return PyBool_FromLong(Coro_CAST(op)->running);
}

static PyObject *
coro_get_suspended(PyObject *op, void *closure)
{
    FwCoro *self = Coro_CAST(op);
    return PyBool_FromLong(self->awaiting != NULL && !self->running);
}

static PyObject *
coro_get_none(PyObject *op, void *closure)
{
    Py_RETURN_NONE;
}

static PyObject *
coro_get_origin(PyObject *op, void *closure)
{
    FwCoro *self = Coro_CAST(op);
    return Py_NewRef(self->origin != NULL ? self->origin : Py_None);
}

static PyObject *
coro_get_await(PyObject *op, void *closure)
{
    FwCoro *self = Coro_CAST(op);
    return Py_NewRef(self->awaiting != NULL ? self->awaiting : Py_None);
}

/* cr_state (3.15+, what inspect.getcoroutinestate() reads). */
static PyObject *
coro_get_state(PyObject *op, void *closure)
{
    FwCoro *self = Coro_CAST(op);
    return PyUnicode_FromString(self->finished  ? "CORO_CLOSED"
                                : self->running ? "CORO_RUNNING"
                                : self->started ? "CORO_SUSPENDED"
                                                : "CORO_CREATED");
}

static PyGetSetDef coro_getset[] = {
    {"__name__", coro_get_name, NULL, NULL, NULL},
    {"__qualname__", coro_get_qualname, NULL, NULL, NULL},
    {"cr_running", coro_get_running, NULL, NULL, NULL},
    {"cr_suspended", coro_get_suspended, NULL, NULL, NULL},
    {"cr_await", coro_get_await, NULL,
     "The __await__ iterator of what the coroutine waits for.", NULL},
    {"cr_frame", coro_get_none, NULL, "None: native code has no frame.",
     NULL},
    {"cr_code", coro_get_none, NULL, "None: native code has no code object.",
     NULL},
    {"cr_origin", coro_get_origin, NULL, NULL, NULL},
    {"cr_state", coro_get_state, NULL, "state of the coroutine", NULL},
    {NULL},
};

static PyMethodDef coro_methods[] = {
    {"send", (PyCFunction)fw_coro_send, METH_O,
     "send(arg)\n--\n\nSend arg into the coroutine."},
    {"throw", (PyCFunction)(void (*)(void))coro_throw, METH_FASTCALL,
     "throw(typ[, val[, tb]])\n--\n\nRaise an exception in the coroutine."},
    {"close", coro_close, METH_NOARGS,
     "close()\n--\n\nRaise GeneratorExit inside the coroutine."},
    {NULL},
};

static PyObject *
coro_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<fastwait coroutine object %s at %p>",
                                Coro_CAST(op)->def->name, op);
}

static int
coro_traverse(PyObject *op, visitproc visit, void *arg)
{
    FwCoro *self = Coro_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->state);
    Py_VISIT(self->awaiting);
    return 0;
}

static int
coro_clear(PyObject *op)
{
    FwCoro *self = Coro_CAST(op);
    Py_CLEAR(self->state);
    Py_CLEAR(self->awaiting);
    return 0;
}

static void
coro_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    if (PyObject_CallFinalizerFromDealloc(op) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(op);
    (void)coro_clear(op);
    Py_CLEAR(Coro_CAST(op)->origin);
    tp->tp_free(op);
    Py_DECREF(tp);
}

PyDoc_STRVAR(coro_doc,
             "A coroutine implemented in C by fastwait (e.g. what wait() "
             "returns).");

static PyType_Slot coro_slots[] = {
    {Py_tp_doc, (void *)coro_doc},
    {Py_tp_repr, coro_repr},
    {Py_tp_traverse, coro_traverse},
    {Py_tp_clear, coro_clear},
    {Py_tp_dealloc, coro_dealloc},
    {Py_tp_finalize, coro_finalize},
    {Py_tp_iter, fw_self_await},
    {Py_tp_iternext, fw_coro_iternext},
    {Py_tp_methods, coro_methods},
    {Py_tp_getset, coro_getset},
    {Py_am_await, fw_self_await},
    {Py_am_send, coro_am_send},
    {0, NULL},
};

static PyType_Spec coro_spec = {
    .name = "fastwait._fastwait.coroutine",
    .basicsize = sizeof(FwCoro),
    .flags = FW_CORO_TYPE_FLAGS,
    .slots = coro_slots,
};

int
fw_coro_init(PyObject *module, fw_state *st)
{
    st->CoroType = fw_coro_type_new(module, &coro_spec);
    return st->CoroType == NULL ? -1 : 0;
}

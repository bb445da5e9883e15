/* The child-coroutine wrapper.
 *
 * When fastwait itself turns a coroutine into a Task (gather's coroutine
 * arguments; later wait/as_completed/TaskGroup children), the Task runs this
 * object instead of the bare coroutine.  It forwards every step to the real
 * coroutine (am_send, send, throw, close) and reports the outcome to its
 * owner the moment the coroutine returns or raises, inside the child's own
 * Task step.  That is what lets a primitive avoid one done-callback (and one
 * loop Handle) per child.
 *
 * The Task's result and exception stay the coroutine's: a return value is
 * passed through unchanged and an exception is left set.  Introspection
 * (__name__, __qualname__, cr_code, cr_frame, cr_running, cr_await, ...) is
 * forwarded so the Task's repr and stack read the same.  This is the only
 * documented difference: task.get_coro() is the wrapper.
 */
#include "state.h"

typedef struct {
    PyObject_HEAD
    PyObject *coro;  /* the real coroutine */
    PyObject *owner; /* strong; NULL once finished or detached */
    fw_finish_fn finish;
    Py_ssize_t index;
    char finished;
} ChildObject;

#define Child_CAST(op) ((ChildObject *)(op))

PyObject *
fw_child_new(fw_state *st, PyObject *coro, PyObject *owner, Py_ssize_t index,
             fw_finish_fn finish)
{
    ChildObject *self = PyObject_GC_New(ChildObject, st->ChildType);
    if (self == NULL) {
        return NULL;
    }
    self->coro = Py_NewRef(coro);
    self->owner = Py_XNewRef(owner);
    self->finish = finish;
    self->index = index;
    self->finished = 0;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

int
fw_child_finished(PyObject *child)
{
    return Child_CAST(child)->finished;
}

void
fw_child_detach(PyObject *child)
{
    Py_CLEAR(Child_CAST(child)->owner);
}

/* The coroutine returned (value != NULL) or raised (value == NULL, error
 * set).  Tell the owner, keeping the coroutine's outcome intact. */
static void
child_report(ChildObject *self, PyObject *value)
{
    self->finished = 1;
    PyObject *owner = self->owner;
    if (owner == NULL) {
        return;
    }
    self->owner = NULL; /* the reference moves to this frame */
    PyObject *exc = NULL;
    if (value == NULL) {
        exc = fw_err_fetch();
    }
    if (self->finish(owner, self->index, value, exc) < 0) {
        /* Nothing sensible can be raised from inside the child's Task
         * step without changing the child's outcome. */
        PyErr_WriteUnraisable(owner);
    }
    if (exc != NULL) {
        fw_err_restore(exc);
    }
    Py_DECREF(owner);
}

static int
child_check(ChildObject *self)
{
    if (self->coro == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "coroutine wrapper was cleared");
        return -1;
    }
    return 0;
}

static PySendResult
child_am_send(PyObject *op, PyObject *arg, PyObject **presult)
{
    ChildObject *self = Child_CAST(op);
    if (child_check(self) < 0) {
        *presult = NULL;
        return PYGEN_ERROR;
    }
    PySendResult r = PyIter_Send(self->coro, arg, presult);
    if (r == PYGEN_RETURN) {
        child_report(self, *presult);
    }
    else if (r == PYGEN_ERROR) {
        child_report(self, NULL);
    }
    return r;
}


static PyObject *
child_send(PyObject *op, PyObject *arg)
{
    PyObject *result;
    PySendResult r = child_am_send(op, arg, &result);
    if (r == PYGEN_RETURN) {
        fw_set_stop_iteration(result);
        Py_DECREF(result);
        return NULL;
    }
    return r == PYGEN_NEXT ? result : NULL;
}

static PyObject *
child_iternext(PyObject *op)
{
    PyObject *result;
    PySendResult r = child_am_send(op, Py_None, &result);
    if (r == PYGEN_RETURN) {
        if (result != Py_None) {
            fw_set_stop_iteration(result);
        }
        Py_DECREF(result);
        return NULL;
    }
    return r == PYGEN_NEXT ? result : NULL;
}

/* After coro.throw()/close() raised: a StopIteration means the coroutine
 * returned; anything else means it raised.  The error stays set. */
static void
child_report_from_error(ChildObject *self)
{
    if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
        child_report(self, NULL);
        return;
    }
    PyObject *exc = fw_err_fetch();
    PyObject *value = PyObject_GetAttrString(exc, "value");
    if (value == NULL) {
        PyErr_Clear();
        value = Py_NewRef(Py_None);
    }
    child_report(self, value);
    Py_DECREF(value);
    fw_err_restore(exc);
}

static PyObject *
child_throw(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ChildObject *self = Child_CAST(op);
    if (nargs < 1 || nargs > 3) {
        /* The coroutine's own wording. */
        PyErr_Format(PyExc_TypeError,
                     nargs < 1 ? "throw expected at least 1 argument, got %zd"
                               : "throw expected at most 3 arguments, got %zd",
                     nargs);
        return NULL;
    }
    if (child_check(self) < 0) {
        return NULL;
    }
    fw_state *st = fw_state_from_type(Py_TYPE(op));
    PyObject *stack[4];
    stack[0] = self->coro;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        stack[1 + i] = args[i];
    }
    PyObject *res = PyObject_VectorcallMethod(st->str_throw, stack,
                                              (size_t)(1 + nargs), NULL);
    if (res == NULL && !self->finished) {
        child_report_from_error(self);
    }
    return res;
}

static PyObject *
child_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ChildObject *self = Child_CAST(op);
    /* A closed child never completes: its owner is not told. */
    Py_CLEAR(self->owner);
    self->finished = 1;
    if (child_check(self) < 0) {
        return NULL;
    }
    fw_state *st = fw_state_from_type(Py_TYPE(op));
    return PyObject_CallMethodNoArgs(self->coro, st->str_close);
}

static PyObject *
child_await(PyObject *op)
{
    return Py_NewRef(op);
}

static PyObject *
child_repr(PyObject *op)
{
    if (Child_CAST(op)->coro == NULL) {
        return PyUnicode_FromString("<cleared fastwait coroutine wrapper>");
    }
    return PyObject_Repr(Child_CAST(op)->coro);
}

/* Forwarded attributes: the closure is the attribute name (a C string). */
static PyObject *
child_forward(PyObject *op, void *closure)
{
    if (child_check(Child_CAST(op)) < 0) {
        return NULL;
    }
    return PyObject_GetAttrString(Child_CAST(op)->coro, (const char *)closure);
}

static PyObject *
child_get_coro(PyObject *op, void *closure)
{
    if (child_check(Child_CAST(op)) < 0) {
        return NULL;
    }
    return Py_NewRef(Child_CAST(op)->coro);
}

static PyGetSetDef child_getset[] = {
    {"__name__", child_forward, NULL, NULL, "__name__"},
    {"__qualname__", child_forward, NULL, NULL, "__qualname__"},
    {"cr_await", child_forward, NULL, NULL, "cr_await"},
    {"cr_code", child_forward, NULL, NULL, "cr_code"},
    {"cr_frame", child_forward, NULL, NULL, "cr_frame"},
    {"cr_origin", child_forward, NULL, NULL, "cr_origin"},
    {"cr_running", child_forward, NULL, NULL, "cr_running"},
    {"cr_suspended", child_forward, NULL, NULL, "cr_suspended"},
    {"__wrapped__", child_get_coro, NULL,
     "The coroutine this wrapper runs.", NULL},
    /* last: blanked out before 3.15, whose coroutines have no cr_state */
    {"cr_state", child_forward, NULL, NULL, "cr_state"},
    {NULL},
};

static PyMethodDef child_methods[] = {
    {"send", (PyCFunction)child_send, METH_O,
     "send(arg)\n--\n\nSend arg into the wrapped coroutine."},
    {"throw", (PyCFunction)(void (*)(void))child_throw, METH_FASTCALL,
     "throw(typ[, val[, tb]])\n--\n\n"
     "Raise an exception in the wrapped coroutine."},
    {"close", child_close, METH_NOARGS,
     "close()\n--\n\nClose the wrapped coroutine."},
    {NULL},
};

static int
child_traverse(PyObject *op, visitproc visit, void *arg)
{
    ChildObject *self = Child_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->coro);
    Py_VISIT(self->owner);
    return 0;
}

static int
child_clear(PyObject *op)
{
    ChildObject *self = Child_CAST(op);
    Py_CLEAR(self->coro);
    Py_CLEAR(self->owner);
    return 0;
}


PyDoc_STRVAR(child_doc,
             "Runs a coroutine inside a task that fastwait created, and tells\n"
             "fastwait the moment it finishes.  Forwards the coroutine's\n"
             "introspection attributes; __wrapped__ is the coroutine.");

static PyType_Slot child_slots[] = {
    {Py_tp_doc, (void *)child_doc},
    {Py_tp_repr, child_repr},
    {Py_tp_traverse, child_traverse},
    {Py_tp_clear, child_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_iter, child_await},
    {Py_tp_iternext, child_iternext},
    {Py_tp_methods, child_methods},
    {Py_tp_getset, child_getset},
    {Py_am_await, child_await},
    {Py_am_send, child_am_send},
    {0, NULL},
};

static PyType_Spec child_spec = {
    .name = "fastwait._fastwait.CoroutineWrapper",
    .basicsize = sizeof(ChildObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = child_slots,
};

int
fw_child_init(PyObject *module, fw_state *st)
{
    if (Py_Version < 0x030F0000) {
        size_t n = sizeof(child_getset) / sizeof(child_getset[0]);
        child_getset[n - 2] = child_getset[n - 1]; /* no cr_state */
    }
    st->ChildType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &child_spec, NULL);
    if (st->ChildType == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "CoroutineWrapper",
                              (PyObject *)st->ChildType) < 0) {
        return -1;
    }
    return fw_register_coroutine_type(st->ChildType);
}

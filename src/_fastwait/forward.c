/* What our coroutine-protocol types share (declared in state.h).
 *
 * FwCoro (coro.c) and the two coroutine wrappers -- child.c's
 * CoroutineWrapper and taskgroup.c's TaskGroupSlotWrapper -- all turn
 * their am_send into send()/__next__ and are their own __await__ iterator.
 * The wrappers also forward the same way to the coroutine they run inside
 * a Task: introspection attributes, repr, throw(); only what they do
 * around a step (tell an owner, hold a slot) is their own.
 */
#include "state.h"

int
fw_wrapper_check(PyObject *wrapper)
{
    if (((fw_wrapper *)wrapper)->coro == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "coroutine wrapper was cleared");
        return -1;
    }
    return 0;
}

PyObject *
fw_send_result(PySendResult r, PyObject *result)
{
    if (r == PYGEN_RETURN) {
        fw_set_stop_iteration(result);
        Py_DECREF(result);
        return NULL;
    }
    return r == PYGEN_NEXT ? result : NULL;
}

PyObject *
fw_coro_send(PyObject *op, PyObject *arg)
{
    PyObject *result;
    /* PyIter_Send goes straight to the type's am_send. */
    PySendResult r = PyIter_Send(op, arg, &result);
    return fw_send_result(r, result);
}

PyObject *
fw_coro_iternext(PyObject *op)
{
    PyObject *result;
    PySendResult r = PyIter_Send(op, Py_None, &result);
    if (r == PYGEN_RETURN && result == Py_None) {
        Py_DECREF(result);
        return NULL; /* StopIteration without a value */
    }
    return fw_send_result(r, result);
}

PyObject *
fw_self_await(PyObject *op)
{
    return Py_NewRef(op);
}

int
fw_check_throw_nargs(Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        /* The coroutine's own wording. */
        PyErr_Format(PyExc_TypeError,
                     nargs < 1 ? "throw expected at least 1 argument, got %zd"
                               : "throw expected at most 3 arguments, got %zd",
                     nargs);
        return -1;
    }
    return 0;
}

/* After coro.throw() raised: a StopIteration means the coroutine
 * returned; anything else means it raised.  The error stays set. */
static void
wrapper_done_from_error(PyObject *wrapper, fw_outcome_fn done)
{
    if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
        done(wrapper, NULL);
        return;
    }
    PyObject *exc = fw_err_fetch();
    PyObject *value = PyObject_GetAttrString(exc, "value");
    if (value == NULL) {
        PyErr_Clear();
        value = Py_NewRef(Py_None);
    }
    done(wrapper, value);
    Py_DECREF(value);
    fw_err_restore(exc);
}

PyObject *
fw_wrapper_throw(PyObject *wrapper, PyObject *const *args, Py_ssize_t nargs,
                 fw_outcome_fn done)
{
    fw_state *st = fw_state_from_type(Py_TYPE(wrapper));
    PyObject *stack[4];
    stack[0] = ((fw_wrapper *)wrapper)->coro;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        stack[1 + i] = args[i];
    }
    PyObject *res = PyObject_VectorcallMethod(st->str_throw, stack,
                                              (size_t)(1 + nargs), NULL);
    if (res == NULL) {
        wrapper_done_from_error(wrapper, done);
    }
    return res;
}

PyObject *
fw_wrapper_close_coro(PyObject *wrapper)
{
    fw_state *st = fw_state_from_type(Py_TYPE(wrapper));
    return PyObject_CallMethodNoArgs(((fw_wrapper *)wrapper)->coro,
                                     st->str_close);
}

PyObject *
fw_wrapper_repr(PyObject *wrapper)
{
    PyObject *coro = ((fw_wrapper *)wrapper)->coro;
    if (coro == NULL) {
        return PyUnicode_FromString("<cleared fastwait coroutine wrapper>");
    }
    return PyObject_Repr(coro);
}

/* Forwarded attributes: the closure is the attribute name (a C string). */
static PyObject *
wrapper_forward(PyObject *op, void *closure)
{
    if (fw_wrapper_check(op) < 0) {
        return NULL;
    }
    return PyObject_GetAttrString(((fw_wrapper *)op)->coro,
                                  (const char *)closure);
}

static PyObject *
wrapper_get_coro(PyObject *op, void *Py_UNUSED(closure))
{
    if (fw_wrapper_check(op) < 0) {
        return NULL;
    }
    return Py_NewRef(((fw_wrapper *)op)->coro);
}

/* One table for both wrapper types (a type's descriptors only point into
 * it).  cr_state goes before 3.15 (fw_coro_type_new). */
PyGetSetDef fw_wrapper_getset[] = {
    {"__name__", wrapper_forward, NULL, NULL, "__name__"},
    {"__qualname__", wrapper_forward, NULL, NULL, "__qualname__"},
    {"cr_await", wrapper_forward, NULL, NULL, "cr_await"},
    {"cr_code", wrapper_forward, NULL, NULL, "cr_code"},
    {"cr_frame", wrapper_forward, NULL, NULL, "cr_frame"},
    {"cr_origin", wrapper_forward, NULL, NULL, "cr_origin"},
    {"cr_running", wrapper_forward, NULL, NULL, "cr_running"},
    {"cr_suspended", wrapper_forward, NULL, NULL, "cr_suspended"},
    {"__wrapped__", wrapper_get_coro, NULL,
     "The coroutine this wrapper runs.", NULL},
    {"cr_state", wrapper_forward, NULL, NULL, "cr_state"},
    {NULL},
};

/* Coroutines have cr_state (what inspect.getcoroutinestate() reads) from
 * 3.15 on: before, the entry is taken out of the type's getset table (the
 * tables are static and the version is the process's: doing it again
 * finds nothing). */
static void
drop_cr_state(PyType_Spec *spec)
{
    if (Py_Version >= 0x030F0000) {
        return;
    }
    for (PyType_Slot *slot = spec->slots; slot->slot != 0; slot++) {
        if (slot->slot != Py_tp_getset) {
            continue;
        }
        PyGetSetDef *def = slot->pfunc;
        while (def->name != NULL && strcmp(def->name, "cr_state") != 0) {
            def++;
        }
        for (; def->name != NULL; def++) {
            def[0] = def[1];
        }
    }
}

PyTypeObject *
fw_coro_type_new(PyObject *module, PyType_Spec *spec)
{
    drop_cr_state(spec);
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec,
                                                                NULL);
    if (tp != NULL && fw_register_coroutine_type(tp) < 0) {
        Py_CLEAR(tp);
    }
    return tp;
}

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
 *
 * A wrapper made by fw_child_new_started() (eager.c) wraps a coroutine whose
 * first step already ran: `first` holds what that step yielded.  The Task's
 * first send() gets it, as if the Task's own first step had produced it;
 * from then on the wrapper forwards as usual.  A throw() while `first` is
 * still held (the Task was cancelled before its first step) is the Task
 * cancelled while waiting: see child_throw_first().  The drop-in paths pay
 * one NULL test of `first` in am_send.
 */
#include "state.h"

typedef struct {
    FW_WRAPPER_HEAD
    PyObject *owner; /* strong; NULL once finished or detached */
    fw_finish_fn finish;
    Py_ssize_t index;
    PyObject *first; /* what the eagerly run first step yielded, until the
                        Task's first step takes it; else NULL */
    char finished;
    char first_blocking; /* `first` had _asyncio_future_blocking True when
                            it was yielded (reset to False since) */
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
    self->first = NULL;
    self->finished = 0;
    self->first_blocking = 0;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* Was `obj` yielded by an `await` of a future (_asyncio_future_blocking
 * True)?  Then take the flag as a Task's step does (reset it to False):
 * until our Task takes the future, another coroutine may await it, and
 * asyncio's C future refuses a second `await` while the flag is set ("await
 * wasn't used with future").  child_send_first() sets it again for our
 * Task.  An error reading or resetting the flag is dropped: the Task's own
 * step reads it again and meets it there. */
static int
take_blocking(fw_state *st, PyObject *obj)
{
    if (obj == Py_None || PyCoro_CheckExact(obj)) {
        return 0;
    }
    PyObject *blocking;
    int r = fw_getattr_optional(obj, st->str_asyncio_future_blocking,
                                &blocking);
    if (r <= 0) {
        PyErr_Clear();
        return 0;
    }
    r = blocking == Py_True;
    Py_DECREF(blocking);
    if (r && PyObject_SetAttr(obj, st->str_asyncio_future_blocking,
                              Py_False) < 0) {
        PyErr_Clear();
    }
    return r;
}

PyObject *
fw_child_new_started(fw_state *st, PyObject *coro, PyObject *owner,
                     Py_ssize_t index, fw_finish_fn finish, PyObject *first)
{
    PyObject *self = fw_child_new(st, coro, owner, index, finish);
    if (self == NULL) {
        Py_DECREF(first);
        return NULL;
    }
    Child_CAST(self)->first = first;
    Child_CAST(self)->first_blocking = (char)take_blocking(st, first);
    return self;
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
 * set).  Tell the owner, keeping the coroutine's outcome intact.  Once
 * finished (or closed), the owner is gone: a later call only returns
 * (fw_outcome_fn). */
static void
child_report(PyObject *op, PyObject *value)
{
    ChildObject *self = Child_CAST(op);
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

/* The Task's first step: hand it what the coroutine's eager first step
 * yielded.  Like a just-started coroutine, refuse a non-None value (and
 * keep `first` for a later send(None)).
 *
 * A future yielded by `await` carries _asyncio_future_blocking True, and the
 * Task that takes it resets it to False; fw_child_new_started() reset it
 * already (see take_blocking): it is set True again, as the `await` left
 * it, so that this Task sees what its own first step would have seen. */
static PySendResult
child_send_first(ChildObject *self, PyObject *arg, PyObject **presult)
{
    if (arg != Py_None) {
        PyErr_SetString(PyExc_TypeError,
                        "can't send non-None value to a just-started "
                        "coroutine");
        *presult = NULL;
        return PYGEN_ERROR;
    }
    PyObject *first = self->first;
    self->first = NULL;
    if (self->first_blocking) {
        fw_state *st = fw_state_from_type(Py_TYPE(self));
        if (PyObject_SetAttr(first, st->str_asyncio_future_blocking,
                             Py_True) < 0) {
            /* It was True already once; a Task step cannot raise this
             * without changing the child's outcome. */
            PyErr_WriteUnraisable(first);
        }
    }
    *presult = first; /* the reference moves to the caller */
    return PYGEN_NEXT;
}

static PySendResult
child_am_send(PyObject *op, PyObject *arg, PyObject **presult)
{
    ChildObject *self = Child_CAST(op);
    if (self->first != NULL) {
        return child_send_first(self, arg, presult);
    }
    if (fw_wrapper_check(op) < 0) {
        *presult = NULL;
        return PYGEN_ERROR;
    }
    return fw_wrapper_send(op, arg, presult, child_report);
}

/* The message of a thrown CancelledError for fut.cancel(msg=...):
 * exc.args[0] when args has exactly one item (what Task's
 * _make_cancelled_error builds from its cancel message), else None.
 * `thrown` may be the class (throw(CancelledError)): None. */
static PyObject *
cancel_message_of(PyObject *thrown)
{
    if (!PyExceptionInstance_Check(thrown)) {
        return Py_NewRef(Py_None);
    }
    PyObject *args = PyObject_GetAttrString(thrown, "args");
    if (args == NULL) {
        return NULL;
    }
    PyObject *msg = PyTuple_Check(args) && PyTuple_GET_SIZE(args) == 1
                        ? PyTuple_GET_ITEM(args, 0)
                        : Py_None;
    Py_INCREF(msg);
    Py_DECREF(args);
    return msg;
}

/* throw() while the eager first step's yield is still held: the Task threw
 * before its first step, which for asyncio's Tasks means it was cancelled
 * before that step ran (a lazy task factory schedules the step with
 * call_soon).  The coroutine is already suspended at its await, so we
 * treat it as a Task cancelled while waiting.  The Task would have taken
 * the yielded future as its _fut_waiter (a future of the running loop,
 * yielded with _asyncio_future_blocking True, which take_blocking() reset
 * as the Task's step does) and Task.cancel(msg) would have cancelled it
 * with the message.  So a thrown CancelledError cancels that future first,
 * then the exception is thrown into the coroutine at its await (the caller
 * does that).  Anything else thrown, or anything but such a future held
 * (None from a bare yield, a foreign future, junk the Task would reject),
 * is only dropped.  An error while cancelling cannot be raised from the
 * Task's step without changing the child's outcome: it is reported as
 * unraisable, and the throw goes on.
 *
 * Observable against an eager Task cancelled while waiting: the future is
 * cancelled in the Task's first step (the iteration after task.cancel())
 * rather than inside task.cancel(), and the coroutine gets the Task's own
 * CancelledError (same type and args as the future's) in that same step,
 * before the future's other done callbacks run. */
static void
child_throw_first(fw_state *st, ChildObject *self, PyObject *thrown)
{
    PyObject *first = self->first;
    self->first = NULL;
    PyObject *fut_loop = NULL, *loop = NULL, *msg = NULL;
    if (!self->first_blocking ||
        !PyErr_GivenExceptionMatches(thrown, st->CancelledError)) {
        goto done;
    }
    fut_loop = fw_get_loop(st, first);
    if (fut_loop == NULL) {
        goto done;
    }
    loop = PyObject_CallNoArgs(st->get_running_loop_or_none);
    if (loop == NULL || loop != fut_loop) {
        goto done;
    }
    msg = cancel_message_of(thrown);
    if (msg == NULL) {
        goto done;
    }
    PyObject *stack[2] = {first, msg};
    PyObject *res = PyObject_VectorcallMethod(
        st->str_cancel, stack, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, st->kw_msg);
    Py_XDECREF(res);
done:
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(first);
    }
    Py_XDECREF(msg);
    Py_XDECREF(loop);
    Py_XDECREF(fut_loop);
    Py_DECREF(first);
}

static PyObject *
child_throw(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ChildObject *self = Child_CAST(op);
    if (fw_check_throw_nargs(nargs) < 0 || fw_wrapper_check(op) < 0) {
        return NULL;
    }
    if (self->first != NULL) {
        child_throw_first(fw_state_from_type(Py_TYPE(op)), self, args[0]);
    }
    return fw_wrapper_throw(op, args, nargs, child_report);
}

static PyObject *
child_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ChildObject *self = Child_CAST(op);
    /* A closed child never completes: its owner is not told. */
    Py_CLEAR(self->owner);
    Py_CLEAR(self->first); /* a held yield is dropped, nothing cancelled */
    self->finished = 1;
    if (fw_wrapper_check(op) < 0) {
        return NULL;
    }
    return fw_wrapper_close_coro(op);
}

static PyMethodDef child_methods[] = {
    {"send", (PyCFunction)fw_coro_send, METH_O,
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
    Py_VISIT(self->first);
    return 0;
}

static int
child_clear(PyObject *op)
{
    ChildObject *self = Child_CAST(op);
    Py_CLEAR(self->coro);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->first);
    return 0;
}


PyDoc_STRVAR(child_doc,
             "Runs a coroutine inside a task that fastwait created, and tells\n"
             "fastwait the moment it finishes.  Forwards the coroutine's\n"
             "introspection attributes; __wrapped__ is the coroutine.");

static PyType_Slot child_slots[] = {
    {Py_tp_doc, (void *)child_doc},
    {Py_tp_traverse, child_traverse},
    {Py_tp_clear, child_clear},
    {Py_tp_methods, child_methods},
    {Py_am_send, child_am_send},
    FW_WRAPPER_SLOTS,
    {0, NULL},
};

static PyType_Spec child_spec = {
    .name = "fastwait._fastwait.CoroutineWrapper",
    .basicsize = sizeof(ChildObject),
    .flags = FW_CORO_TYPE_FLAGS,
    .slots = child_slots,
};

int
fw_child_init(PyObject *module, fw_state *st)
{
    st->ChildType = fw_coro_type_new(module, &child_spec);
    if (st->ChildType == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "CoroutineWrapper",
                                 (PyObject *)st->ChildType);
}

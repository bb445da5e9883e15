/* shield(arg)
 *
 * asyncio.shield of the running interpreter (the same code on 3.11-3.13;
 * 3.11 converts the argument with _ensure_future): the inner future, the
 * already-done shortcut returning it, `outer = loop.create_future()`, and
 * the stdlib's two closures as two C callbacks of one type:
 *
 *   _inner_done_callback, on the inner: copies the inner's outcome to the
 *     outer (a cancelled inner cancels the outer, without a message), or,
 *     when the outer was cancelled first, marks the inner's exception
 *     retrieved;
 *   _outer_done_callback, on the outer: removes the inner callback when the
 *     outer finishes while the inner is still pending (bpo-35125), so that
 *     a later failure of the inner is reported as never retrieved.
 *
 * One saving, unobservable: when the inner callback completes the outer
 * with a result or a cancellation, the outer callback would run in the
 * next iteration, see the inner done and do nothing.  The inner callback
 * takes it off the outer first, which spares its loop callback -- provided
 * that removing it cannot run foreign code (remove_done_callback compares
 * every other callback with ==; only callbacks whose types compare by
 * identity are known not to), and not when the outer gets an exception: the
 * stdlib's pending outer callback keeps the outer alive into that next
 * iteration, and an outer nobody awaits reports "exception was never
 * retrieved" when it dies.
 *
 * 3.14 (and later) adds call-graph edges: when current_task(loop) is not
 * None, the inner is recorded as awaited by it, and a third closure,
 *   _clear_awaited_by_callback, on the inner before the other one: removes
 *     that edge when the inner finishes;
 * the outer callback removes it (and that callback) when the outer
 * finishes first.  3.14 also stopped marking the inner's exception
 * retrieved once the outer was cancelled: a failure nobody reads is then
 * reported as never retrieved.
 *
 * Where a repr lists callbacks (a Task's repr, a Handle's in the loop's
 * error messages) the stdlib's closures read
 * `shield.<locals>._inner_done_callback() at .../asyncio/tasks.py:N`; ours
 * carry the same __qualname__ and, as __wrapped__, a function made from the
 * stdlib closure's own code object, which is where asyncio's formatting
 * finds the source location (those functions are never called), and the
 * same repr(), which uvloop's messages show.
 */
#include "state.h"

enum { CB_INNER, CB_OUTER, CB_CLEAR };

static const char *const cb_names[] = {
    "_inner_done_callback", "_outer_done_callback",
    "_clear_awaited_by_callback"};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fw_state *st;
    PyObject *target; /* inner callback: the outer; outer callback: inner;
                         clear callback: cur_task */
    PyObject *other;  /* the other callback, until one of them has run */
    PyObject *clear;  /* outer callback, 3.14+: the clear callback or NULL */
    char is_outer;    /* CB_INNER, CB_OUTER or CB_CLEAR */
} ShieldCallback;

#define Cb_CAST(op) ((ShieldCallback *)(op))

static int
cb_traverse(PyObject *op, visitproc visit, void *arg)
{
    ShieldCallback *self = Cb_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->target);
    Py_VISIT(self->other);
    Py_VISIT(self->clear);
    return 0;
}

static int
cb_clear(PyObject *op)
{
    ShieldCallback *self = Cb_CAST(op);
    Py_CLEAR(self->target);
    Py_CLEAR(self->other);
    Py_CLEAR(self->clear);
    return 0;
}

/* Can outer.remove_done_callback(cb) run without calling foreign code?
 * It compares each other callback with `cb` by ==; callbacks whose types
 * compare by identity (functions, builtin and bound methods, most callable
 * objects: object's tp_richcompare) answer without calling anything. */
static int
removal_is_quiet(fw_state *st, PyObject *outer, PyObject *cb)
{
    PyObject *callbacks = PyObject_GetAttr(outer, st->str_callbacks);
    if (callbacks == NULL) {
        return -1;
    }
    int quiet = PyList_CheckExact(callbacks);
    for (Py_ssize_t i = 0; quiet && i < PyList_GET_SIZE(callbacks); i++) {
        PyObject *item = PyList_GET_ITEM(callbacks, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) < 1) {
            quiet = 0;
            break;
        }
        PyObject *fn = PyTuple_GET_ITEM(item, 0);
        if (fn == cb) {
            continue;
        }
        void *cmp = PyType_GetSlot(Py_TYPE(fn), Py_tp_richcompare);
        quiet = cmp == st->richcompare_object ||
                cmp == st->richcompare_cfunction ||
                cmp == st->richcompare_method;
    }
    Py_DECREF(callbacks);
    return quiet;
}

/* The outer is about to get a result or be cancelled: take the outer
 * callback `partner` off it when that is unobservable (see the top). */
static int
drop_outer_callback(fw_state *st, PyObject *outer, PyObject *partner)
{
    if (partner == NULL || !Py_IS_TYPE(outer, st->FutureType)) {
        return 0;
    }
    int quiet = removal_is_quiet(st, outer, partner);
    if (quiet <= 0) {
        return quiet;
    }
    return fw_remove_done_callback(st, outer, partner);
}

static int
call_method_one(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *r = arg == NULL ? PyObject_CallMethodNoArgs(obj, name)
                              : PyObject_CallMethodOneArg(obj, name, arg);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* _inner_done_callback(inner) */
static int
inner_done(ShieldCallback *self, PyObject *inner)
{
    fw_state *st = self->st;
    PyObject *outer = Py_NewRef(self->target);
    /* Break the cycle with the outer callback: once this has run, nothing
     * needs it from here. */
    PyObject *partner = self->other;
    self->other = NULL;
    PyObject *exc = NULL;
    int r = -1;

    int cancelled = fw_fut_bool(st, outer, FW_CANCELLED);
    if (cancelled < 0) {
        goto done;
    }
    if (cancelled && !st->shield_marks_retrieved) {
        r = 0; /* 3.14+: `return` */
        goto done;
    }
    if (cancelled) {
        cancelled = fw_fut_bool(st, inner, FW_CANCELLED);
        if (cancelled < 0) {
            goto done;
        }
        if (!cancelled) {
            /* Mark inner's result as retrieved. */
            exc = fw_fut_call(st, inner, FW_EXCEPTION);
            if (exc == NULL) {
                goto done;
            }
        }
        r = 0;
        goto done;
    }

    cancelled = fw_fut_bool(st, inner, FW_CANCELLED);
    if (cancelled < 0) {
        goto done;
    }
    if (cancelled) {
        if (drop_outer_callback(st, outer, partner) < 0) {
            goto done;
        }
        r = call_method_one(outer, st->str_cancel, NULL);
        goto done;
    }
    exc = fw_fut_call(st, inner, FW_EXCEPTION);
    if (exc == NULL) {
        goto done;
    }
    if (exc != Py_None) {
        r = call_method_one(outer, st->str_set_exception, exc);
        goto done;
    }
    PyObject *result = fw_fut_call(st, inner, FW_RESULT);
    if (result == NULL) {
        goto done;
    }
    if (drop_outer_callback(st, outer, partner) == 0) {
        r = call_method_one(outer, st->str_set_result, result);
    }
    Py_DECREF(result);
done:
    Py_XDECREF(exc);
    Py_XDECREF(partner);
    Py_DECREF(outer);
    return r;
}

/* _outer_done_callback(outer) */
static int
outer_done(ShieldCallback *self)
{
    fw_state *st = self->st;
    if (self->other == NULL) {
        return 0; /* cleared by the GC */
    }
    PyObject *inner_cb = Py_NewRef(self->other);
    PyObject *inner = Py_NewRef(self->target);
    /* The inner callback no longer needs to drop us (see inner_done). */
    Py_CLEAR(Cb_CAST(inner_cb)->other);
    int r = fw_fut_bool(st, inner, FW_DONE);
    if (r == 0) {
        r = fw_remove_done_callback(st, inner, inner_cb);
        PyObject *clear = self->clear;
        if (r == 0 && clear != NULL) {
            /* 3.14+: inner.remove_done_callback(_clear_awaited_by_callback);
             * future_discard_from_awaited_by(inner, cur_task) */
            Py_INCREF(clear);
            r = fw_remove_done_callback(st, inner, clear);
            if (r == 0 && Cb_CAST(clear)->target != NULL) {
                r = fw_graph_discard(st, inner, Cb_CAST(clear)->target);
            }
            Py_DECREF(clear);
        }
    }
    Py_DECREF(inner);
    Py_DECREF(inner_cb);
    return r < 0 ? -1 : 0;
}

static PyObject *
cb_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
              PyObject *kwnames)
{
    ShieldCallback *self = Cb_CAST(op);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) || nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes exactly one argument",
                     cb_names[(int)self->is_outer]);
        return NULL;
    }
    if (self->target == NULL) {
        Py_RETURN_NONE; /* cleared by the GC */
    }
    Py_INCREF(op);
    int r = self->is_outer == CB_CLEAR
                ? fw_graph_discard(self->st, args[0], self->target)
            : self->is_outer ? outer_done(self)
                             : inner_done(self, args[0]);
    Py_DECREF(op);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
cb_get_qualname(PyObject *op, void *closure)
{
    return PyUnicode_FromFormat("shield.<locals>.%s",
                                cb_names[(int)Cb_CAST(op)->is_outer]);
}

static PyObject *
cb_get_name(PyObject *op, void *closure)
{
    return PyUnicode_FromString(cb_names[(int)Cb_CAST(op)->is_outer]);
}

static PyObject *
cb_get_wrapped(PyObject *op, void *closure)
{
    ShieldCallback *self = Cb_CAST(op);
    PyObject *src = self->is_outer == CB_CLEAR ? self->st->shield_clear_source
                    : self->is_outer           ? self->st->shield_outer_source
                                     : self->st->shield_inner_source;
    if (src == NULL || src == Py_None) {
        PyErr_SetString(PyExc_AttributeError, "__wrapped__");
        return NULL;
    }
    return Py_NewRef(src);
}

/* As the stdlib's closures read: uvloop's "Exception in callback ..."
 * messages show repr(callback). */
static PyObject *
cb_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<function shield.<locals>.%s at %p>",
                                cb_names[(int)Cb_CAST(op)->is_outer], op);
}

static PyGetSetDef cb_getset[] = {
    {"__qualname__", cb_get_qualname, NULL, NULL, NULL},
    {"__name__", cb_get_name, NULL, NULL, NULL},
    {"__wrapped__", cb_get_wrapped, NULL,
     "the stdlib closure this callback implements (never called; it is "
     "where asyncio's reprs find the source location)",
     NULL},
    {NULL},
};

static PyMemberDef cb_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET,
     offsetof(ShieldCallback, vectorcall), Py_READONLY},
    {NULL},
};

static PyType_Slot cb_slots[] = {
    {Py_tp_doc, (void *)"A done-callback of fastwait.shield() (internal)."},
    {Py_tp_traverse, cb_traverse},
    {Py_tp_clear, cb_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_repr, cb_repr},
    {Py_tp_members, cb_members},
    {Py_tp_getset, cb_getset},
    {0, NULL},
};

static PyType_Spec cb_spec = {
    .name = "fastwait._fastwait._ShieldCallback",
    .basicsize = sizeof(ShieldCallback),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = cb_slots,
};

static ShieldCallback *
cb_new(fw_state *st, PyObject *target, int is_outer)
{
    ShieldCallback *self = PyObject_GC_New(ShieldCallback,
                                           st->ShieldCallbackType);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = cb_vectorcall;
    self->st = st;
    self->target = Py_NewRef(target);
    self->other = NULL;
    self->clear = NULL;
    self->is_outer = (char)is_outer;
    PyObject_GC_Track(self);
    return self;
}

/* ------------------------------------------------------------------ */
/* shield() */

static PyObject *
shield_impl(fw_state *st, PyObject *arg)
{
    /* inner = ensure_future(arg) (3.11: _ensure_future) */
    PyObject *inner = fw_ensure_future(st, arg, NULL);
    if (inner == NULL) {
        return NULL;
    }
    int done = fw_fut_bool(st, inner, FW_DONE);
    if (done != 0) {
        /* Shortcut (or an error). */
        if (done < 0) {
            Py_CLEAR(inner);
        }
        return inner;
    }
    PyObject *outer = NULL;
    ShieldCallback *inner_cb = NULL, *outer_cb = NULL, *clear_cb = NULL;
    PyObject *loop = fw_get_loop(st, inner);
    if (loop == NULL) {
        goto fail;
    }
    outer = PyObject_CallMethodNoArgs(loop, st->str_create_future);
    if (outer == NULL) {
        Py_DECREF(loop);
        goto fail;
    }
    if (st->graph_edges && loop != Py_None) {
        /* 3.14+: if (cur_task := current_task(loop)) is not None:
         *     futures.future_add_to_awaited_by(inner, cur_task) */
        PyObject *cur_task = PyObject_CallOneArg(st->current_task, loop);
        if (cur_task == NULL) {
            Py_DECREF(loop);
            goto fail;
        }
        if (cur_task != Py_None) {
            clear_cb = cb_new(st, cur_task, CB_CLEAR);
        }
        int r = clear_cb == NULL ? (cur_task == Py_None ? 0 : -1)
                                 : fw_graph_add(st, inner, cur_task);
        Py_DECREF(cur_task);
        if (r < 0) {
            Py_DECREF(loop);
            goto fail;
        }
    }
    Py_DECREF(loop);
    inner_cb = cb_new(st, outer, CB_INNER);
    if (inner_cb == NULL) {
        goto fail;
    }
    outer_cb = cb_new(st, inner, CB_OUTER);
    if (outer_cb == NULL) {
        goto fail;
    }
    inner_cb->other = Py_NewRef(outer_cb);
    outer_cb->other = Py_NewRef(inner_cb);
    outer_cb->clear = Py_XNewRef((PyObject *)clear_cb);
    if ((clear_cb != NULL &&
         fw_add_done_callback(st, inner, (PyObject *)clear_cb) < 0) ||
        fw_add_done_callback(st, inner, (PyObject *)inner_cb) < 0 ||
        fw_add_done_callback(st, outer, (PyObject *)outer_cb) < 0) {
        goto fail;
    }
    Py_XDECREF(clear_cb);
    Py_DECREF(inner_cb);
    Py_DECREF(outer_cb);
    Py_DECREF(inner);
    return outer;
fail:
    Py_XDECREF(clear_cb);
    Py_XDECREF(inner_cb);
    Py_XDECREF(outer_cb);
    Py_XDECREF(outer);
    Py_DECREF(inner);
    return NULL;
}

PyDoc_STRVAR(
    shield_doc,
    "shield(arg)\n--\n\n"
    "Wait for a future, shielding it from cancellation.\n"
    "\n"
    "A drop-in replacement for asyncio.shield() with the semantics of the\n"
    "running Python version: a coroutine is wrapped in a task; an argument\n"
    "that is already done is returned itself; otherwise the result is a new\n"
    "future of the argument's loop that gets the argument's outcome.\n"
    "Cancelling that future (or the task awaiting it) leaves the argument\n"
    "running; a cancelled argument cancels it.");

static PyObject *
shield(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
       PyObject *kwnames)
{
    fw_state *st = fw_get_state(module);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw != 1 ||
        (nkw == 1 && PyUnicode_CompareWithASCIIString(
                         PyTuple_GET_ITEM(kwnames, 0), "arg") != 0)) {
        return fw_signature_error(st, "shield", NULL, args, nargs, kwnames);
    }
    return shield_impl(st, args[0]);
}

static PyMethodDef shield_methods[] = {
    {"shield", (PyCFunction)(void (*)(void))shield,
     METH_FASTCALL | METH_KEYWORDS, shield_doc},
    {NULL},
};

/* A never-called function made from the code object of the stdlib's
 * closure `name` inside asyncio.tasks.shield (its free variables get empty
 * cells), or None when this Python's shield has no such closure. */
static PyObject *
closure_source(PyObject *shield_code, const char *name)
{
    PyObject *consts = PyObject_GetAttrString(shield_code, "co_consts");
    if (consts == NULL) {
        return NULL;
    }
    PyObject *found = NULL;
    for (Py_ssize_t i = 0; PyTuple_Check(consts) &&
                           i < PyTuple_GET_SIZE(consts) && found == NULL;
         i++) {
        PyObject *c = PyTuple_GET_ITEM(consts, i);
        if (!PyCode_Check(c)) {
            continue;
        }
        PyObject *co_name = PyObject_GetAttrString(c, "co_name");
        if (co_name == NULL) {
            Py_DECREF(consts);
            return NULL;
        }
        if (PyUnicode_Check(co_name) &&
            PyUnicode_CompareWithASCIIString(co_name, name) == 0) {
            found = c;
        }
        Py_DECREF(co_name);
    }
    if (found == NULL) {
        Py_DECREF(consts);
        Py_RETURN_NONE;
    }
    Py_INCREF(found);
    Py_DECREF(consts);

    PyObject *func = NULL, *globals = NULL, *freevars = NULL, *cells = NULL;
    globals = Py_BuildValue("{ss}", "__name__", "asyncio.tasks");
    freevars = PyObject_GetAttrString(found, "co_freevars");
    if (globals == NULL || freevars == NULL || !PyTuple_Check(freevars)) {
        goto done;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(freevars);
    cells = PyTuple_New(n);
    if (cells == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *cell = PyCell_New(NULL);
        if (cell == NULL) {
            goto done;
        }
        PyTuple_SET_ITEM(cells, i, cell);
    }
    func = PyFunction_New(found, globals);
    if (func != NULL && n > 0 && PyFunction_SetClosure(func, cells) < 0) {
        Py_CLEAR(func);
    }
done:
    Py_XDECREF(cells);
    Py_XDECREF(freevars);
    Py_XDECREF(globals);
    Py_DECREF(found);
    return func;
}

int
fw_shield_init(PyObject *module, fw_state *st)
{
    st->ShieldCallbackType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &cb_spec, NULL);
    if (st->ShieldCallbackType == NULL) {
        return -1;
    }
    st->richcompare_object = PyType_GetSlot(&PyBaseObject_Type,
                                            Py_tp_richcompare);
    st->richcompare_cfunction = PyType_GetSlot(&PyCFunction_Type,
                                               Py_tp_richcompare);
    st->richcompare_method = PyType_GetSlot(&PyMethod_Type,
                                            Py_tp_richcompare);

    PyObject *tasks = PyImport_ImportModule("asyncio.tasks");
    if (tasks == NULL) {
        return -1;
    }
    PyObject *stdlib_shield = PyObject_GetAttrString(tasks, "shield");
    Py_DECREF(tasks);
    if (stdlib_shield == NULL) {
        return -1;
    }
    PyObject *code = PyFunction_Check(stdlib_shield)
                         ? Py_XNewRef(PyFunction_GetCode(stdlib_shield))
                         : NULL;
    Py_DECREF(stdlib_shield);
    if (code == NULL) {
        st->shield_inner_source = Py_NewRef(Py_None);
        st->shield_outer_source = Py_NewRef(Py_None);
        st->shield_clear_source = Py_NewRef(Py_None);
    }
    else {
        st->shield_inner_source = closure_source(code,
                                                 "_inner_done_callback");
        st->shield_outer_source = closure_source(code,
                                                 "_outer_done_callback");
        st->shield_clear_source = closure_source(
            code, "_clear_awaited_by_callback");
        Py_DECREF(code);
        if (st->shield_inner_source == NULL ||
            st->shield_outer_source == NULL ||
            st->shield_clear_source == NULL) {
            return -1;
        }
    }
    return PyModule_AddFunctions(module, shield_methods);
}

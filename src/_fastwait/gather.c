/* gather(*aws, return_exceptions=False)
 *
 * Same observable behaviour as asyncio.gather of the running interpreter
 * (asyncio/tasks.py: gather, _GatheringFuture), in two shapes:
 *
 * Wrapped mode -- every argument is a coroutine and the loop creates plain
 *   asyncio Tasks (no custom task factory): each child task runs a
 *   CoroutineWrapper (child.c) that reports the coroutine's outcome the
 *   moment it finishes.  A child's completion needs a loop callback only
 *   when the stdlib's done-callback for it would change something: the last
 *   child, a failure (or a cancellation), or a child that was cancelled
 *   during its last step.  That one callback is scheduled at the moment of
 *   the completion, so it runs in the same loop iteration as the stdlib's
 *   done-callback would.  Every other completion is bookkeeping only.
 *
 * Callback mode -- anything else (futures, tasks, other awaitables, custom
 *   task factories): the stdlib's algorithm, one C done-callback per unique
 *   child.  Children already done when gather() sees them are processed at
 *   once on 3.12+ (gh-104144) and in one batched loop callback on 3.11
 *   (where the stdlib's per-child callbacks would all run in the next
 *   iteration, in the same order).
 *
 * GatherCore holds the state; _GatheringFuture (a subtype of the C
 * asyncio.Future, fields appended after the base's) is the returned outer
 * future, whose cancel() fans out to the children.
 */
#include "state.h"

/* ------------------------------------------------------------------ */
/* _GatheringFuture: asyncio.Future + our fields after the base's. */

typedef struct {
    PyObject *children; /* list, one entry per argument (duplicates kept) */
    int cancel_requested;
} GatherFields;

static inline Py_ssize_t
gfut_fields_offset(PyTypeObject *base)
{
    Py_ssize_t align = (Py_ssize_t)_Alignof(GatherFields);
    return (base->tp_basicsize + align - 1) / align * align;
}

static inline GatherFields *
GF(PyObject *self)
{
    /* The type is final: its tp_base is asyncio.Future. */
    return (GatherFields *)((char *)self +
                            gfut_fields_offset(Py_TYPE(self)->tp_base));
}

static int
gfut_traverse(PyObject *self, visitproc visit, void *arg)
{
    PyTypeObject *base = Py_TYPE(self)->tp_base;
    Py_VISIT(GF(self)->children);
    if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        /* 3.11: the static base does not visit the instance's type. */
        Py_VISIT(Py_TYPE(self));
    }
    return base->tp_traverse(self, visit, arg);
}

static int
gfut_clear(PyObject *self)
{
    Py_CLEAR(GF(self)->children);
    return Py_TYPE(self)->tp_base->tp_clear(self);
}

static void
gfut_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyTypeObject *base = tp->tp_base;
    /* Run asyncio's finalizer ("exception was never retrieved") first; the
     * base dealloc will not run it again. */
    if (PyObject_CallFinalizerFromDealloc(self) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    Py_CLEAR(GF(self)->children);
    base->tp_dealloc(self);
    if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        /* 3.11: the static base's dealloc does not release the type. */
        Py_DECREF(tp);
    }
}

PyDoc_STRVAR(gfut_cancel_doc,
             "cancel($self, /, msg=None)\n--\n\n"
             "Cancel every child (done ones too) with msg.\n\n"
             "Returns False when the future is already done; otherwise True "
             "if any\nchild accepted the cancellation, and the future then "
             "finishes with\nCancelledError once all children are done.");

static PyObject *
gfut_cancel(PyObject *self, PyTypeObject *defining_class,
            PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    fw_state *st = (fw_state *)PyType_GetModuleState(defining_class);
    PyObject *msg = Py_None;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw > 1 ||
        (nkw == 1 && PyUnicode_CompareWithASCIIString(
                         PyTuple_GET_ITEM(kwnames, 0), "msg") != 0)) {
        return fw_signature_error(st, "cancel", self, args, nargs, kwnames);
    }
    if (nargs + nkw == 1) {
        msg = args[0];
    }

    int done = fw_fut_bool(st, self, FW_DONE);
    if (done != 0) {
        return done < 0 ? NULL : Py_NewRef(Py_False);
    }
    PyObject *children = GF(self)->children;
    if (children == NULL) {
        return Py_NewRef(Py_False);
    }
    Py_INCREF(children);
    int ret = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(children); i++) {
        PyObject *stack[2] = {PyList_GET_ITEM(children, i), msg};
        PyObject *r = PyObject_VectorcallMethod(
            st->str_cancel, stack, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
            st->kw_msg);
        if (r == NULL) {
            Py_DECREF(children);
            return NULL;
        }
        int t = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (t < 0) {
            Py_DECREF(children);
            return NULL;
        }
        ret |= t;
    }
    Py_DECREF(children);
    if (ret) {
        GF(self)->cancel_requested = 1;
    }
    return Py_NewRef(ret ? Py_True : Py_False);
}

static PyObject *
gfut_get_children(PyObject *self, void *closure)
{
    PyObject *children = GF(self)->children;
    return children == NULL ? PyList_New(0) : Py_NewRef(children);
}

static PyObject *
gfut_get_cancel_requested(PyObject *self, void *closure)
{
    return PyBool_FromLong(GF(self)->cancel_requested);
}

static PyMethodDef gfut_methods[] = {
    {"cancel", (PyCFunction)(void (*)(void))gfut_cancel,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS, gfut_cancel_doc},
    {NULL},
};

static PyGetSetDef gfut_getset[] = {
    {"_children", gfut_get_children, NULL,
     "The children, one per argument of gather().", NULL},
    {"_cancel_requested", gfut_get_cancel_requested, NULL,
     "True once cancel() reached a child.", NULL},
    {NULL},
};

PyDoc_STRVAR(gfut_doc,
             "The future returned by fastwait.gather().\n\n"
             "Like asyncio's _GatheringFuture, cancel() cancels the children "
             "and does\nnot mark the future cancelled at once.");

static PyType_Slot gfut_slots[] = {
    {Py_tp_doc, (void *)gfut_doc},
    {Py_tp_traverse, gfut_traverse},
    {Py_tp_clear, gfut_clear},
    {Py_tp_dealloc, gfut_dealloc},
    {Py_tp_methods, gfut_methods},
    {Py_tp_getset, gfut_getset},
    {0, NULL},
};

/* ------------------------------------------------------------------ */
/* GatherCore: the state of one gather() call. */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fw_state *st;
    PyObject *outer;    /* NULL while constructing, after an aborted
                           construction, and once every child is processed */
    PyObject *children; /* list: the child future of each argument */
    PyObject *loop;
    PyObject **values;  /* result of the child at each first position when
                           already known to be a success, NULL = ask the
                           child when building the results */
    Py_ssize_t *first;  /* NULL, or for each position the first position of
                           the same child (duplicates) */
    Py_ssize_t *early;  /* positions of children done at creation; on 3.11
                           -1 ends a batch (see core_add_early) */
    Py_ssize_t nearly;
    Py_ssize_t early_head; /* the next batch starts here */
    Py_ssize_t nargs;
    Py_ssize_t nfuts;     /* unique children */
    Py_ssize_t nfinished; /* children processed (callback mode) or
                             finished (wrapped mode) */
    char return_exceptions;
    char wrapped;
    char constructing;
    char aborted;
    char batch_scheduled;
    /* 3.14+: the task the children's call-graph edges point to (NULL:
     * none recorded). */
    PyObject *graph_waiter;
} GatherCore;

#define Core_CAST(op) ((GatherCore *)(op))

static void
core_release(GatherCore *self)
{
    /* Every child has been processed: nothing will call us again. */
    Py_CLEAR(self->outer);
    Py_CLEAR(self->children);
    Py_CLEAR(self->loop);
    if (self->values != NULL) {
        for (Py_ssize_t i = 0; i < self->nargs; i++) {
            Py_CLEAR(self->values[i]);
        }
        PyMem_Free(self->values);
        self->values = NULL;
    }
    PyMem_Free(self->first);
    self->first = NULL;
    PyMem_Free(self->early);
    self->early = NULL;
    self->nearly = 0;
    self->early_head = 0;
}

static int
core_traverse(PyObject *op, visitproc visit, void *arg)
{
    GatherCore *self = Core_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->outer);
    Py_VISIT(self->children);
    Py_VISIT(self->loop);
    if (self->values != NULL) {
        for (Py_ssize_t i = 0; i < self->nargs; i++) {
            Py_VISIT(self->values[i]);
        }
    }
    Py_VISIT(self->graph_waiter);
    return 0;
}

static int
core_clear(PyObject *op)
{
    core_release(Core_CAST(op));
    Py_CLEAR(Core_CAST(op)->graph_waiter);
    return 0;
}

/* 3.14+ (gh-157213): the outer finishes early, every child loses its
 * edge: _discard_awaited_by(children, cur_task). */
static int
core_graph_discard_all(GatherCore *self)
{
    if (self->graph_waiter == NULL || self->children == NULL) {
        return 0;
    }
    PyObject *children = Py_NewRef(self->children);
    int r = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(children) && r == 0; i++) {
        PyObject *fut = PyList_GET_ITEM(children, i);
        if (fut != NULL) {
            r = fw_graph_discard(self->st, fut, self->graph_waiter);
        }
    }
    Py_DECREF(children);
    return r;
}

/* The stdlib's results list: for each position, the child's result, its
 * exception, or CancelledError(message) for a cancelled child. */
static PyObject *
core_build_results(GatherCore *self)
{
    fw_state *st = self->st;
    Py_ssize_t n = PyList_GET_SIZE(self->children);
    PyObject *results = PyList_New(n);
    if (results == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *fut = PyList_GET_ITEM(self->children, i);
        PyObject *res = NULL;
        if (self->values != NULL) {
            Py_ssize_t p = self->first != NULL ? self->first[i] : i;
            res = Py_XNewRef(self->values[p]);
        }
        if (res == NULL) {
            int cancelled = fw_fut_bool(st, fut, FW_CANCELLED);
            if (cancelled < 0) {
                goto fail;
            }
            if (cancelled) {
                PyObject *msg = PyObject_GetAttr(fut, st->str_cancel_message);
                if (msg == NULL) {
                    goto fail;
                }
                if (msg == Py_None) {
                    Py_SETREF(msg, PyUnicode_FromString(""));
                    if (msg == NULL) {
                        goto fail;
                    }
                }
                res = PyObject_CallOneArg(st->CancelledError, msg);
                Py_DECREF(msg);
            }
            else {
                res = fw_fut_call(st, fut, FW_EXCEPTION);
                if (res == Py_None) {
                    Py_DECREF(res);
                    res = fw_fut_call(st, fut, FW_RESULT);
                }
            }
            if (res == NULL) {
                goto fail;
            }
        }
        PyList_SET_ITEM(results, i, res);
    }
    return results;
fail:
    Py_DECREF(results);
    return NULL;
}

/* outer.set_exception(fut._make_cancelled_error()) */
static int
set_cancelled_error(fw_state *st, PyObject *outer, PyObject *fut)
{
    PyObject *exc = PyObject_CallMethodNoArgs(fut,
                                              st->str_make_cancelled_error);
    if (exc == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(outer, st->str_set_exception,
                                            exc);
    Py_DECREF(exc);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* The body of the stdlib's _done_callback(fut), with "nfinished == nfuts"
 * decided by the caller. */
static int
core_child_done(GatherCore *self, PyObject *fut, Py_ssize_t pos, int is_last)
{
    fw_state *st = self->st;
    PyObject *outer = self->outer;
    int r = 0;
    if (outer == NULL) {
        /* Construction was aborted: the stdlib's outer is None. */
        goto mark_retrieved;
    }
    Py_INCREF(outer);
    int done = fw_fut_bool(st, outer, FW_DONE);
    if (done < 0) {
        goto error;
    }
    if (done) {
        Py_DECREF(outer);
        goto mark_retrieved;
    }

    if (!self->return_exceptions) {
        int cancelled = fw_fut_bool(st, fut, FW_CANCELLED);
        if (cancelled < 0) {
            goto error;
        }
        if (cancelled) {
            if (self->graph_waiter != NULL) {
                /* exc = fut._make_cancelled_error(); discard; set */
                PyObject *cexc = PyObject_CallMethodNoArgs(
                    fut, st->str_make_cancelled_error);
                if (cexc == NULL || core_graph_discard_all(self) < 0) {
                    Py_XDECREF(cexc);
                    goto error;
                }
                PyObject *res = PyObject_CallMethodOneArg(
                    outer, st->str_set_exception, cexc);
                Py_DECREF(cexc);
                Py_XDECREF(res);
                r = res == NULL ? -1 : 0;
                goto finish;
            }
            r = set_cancelled_error(st, outer, fut);
            goto finish;
        }
        PyObject *exc = fw_fut_call(st, fut, FW_EXCEPTION);
        if (exc == NULL) {
            goto error;
        }
        if (exc != Py_None) {
            if (core_graph_discard_all(self) < 0) {
                Py_DECREF(exc);
                goto error;
            }
            PyObject *res = PyObject_CallMethodOneArg(
                outer, st->str_set_exception, exc);
            Py_DECREF(exc);
            Py_XDECREF(res);
            r = res == NULL ? -1 : 0;
            goto finish;
        }
        Py_DECREF(exc);
        if (pos >= 0 && self->values[pos] == NULL &&
            (Py_IS_TYPE(fut, st->FutureType) ||
             Py_IS_TYPE(fut, st->TaskType))) {
            /* A success: keep its result for the results list, which
             * then needs no more calls on this child (asyncio's own
             * futures only: result() has no side effect there). */
            self->values[pos] = fw_fut_call(st, fut, FW_RESULT);
            if (self->values[pos] == NULL) {
                goto error;
            }
        }
    }

    if (is_last) {
        PyObject *results = core_build_results(self);
        if (results == NULL) {
            goto error;
        }
        if (GF(outer)->cancel_requested) {
            /* bpo-32684: the loop variable of the results loop leaks, so
             * the error comes from the last child in argument order. */
            Py_ssize_t n = PyList_GET_SIZE(self->children);
            r = set_cancelled_error(st, outer,
                                    PyList_GET_ITEM(self->children, n - 1));
        }
        else {
            PyObject *res = PyObject_CallMethodOneArg(
                outer, st->str_set_result, results);
            Py_XDECREF(res);
            r = res == NULL ? -1 : 0;
        }
        Py_DECREF(results);
    }
finish:
    Py_DECREF(outer);
    if (is_last) {
        core_release(self);
    }
    return r;
error:
    Py_DECREF(outer);
    return -1;

mark_retrieved: {
    int cancelled = fw_fut_bool(st, fut, FW_CANCELLED);
    if (cancelled < 0) {
        return -1;
    }
    if (!cancelled) {
        PyObject *exc = fw_fut_call(st, fut, FW_EXCEPTION);
        if (exc == NULL) {
            return -1;
        }
        Py_DECREF(exc);
    }
    if (is_last) {
        core_release(self);
    }
    return 0;
}
}

/* Process the children that were done at creation, in argument order. */
static int
core_process_early(GatherCore *self)
{
    /* The next batch: up to the next -1 (3.11) or the end.  Take it out
     * first: processing may release the core's buffers. */
    Py_ssize_t start = self->early_head, end = start;
    while (end < self->nearly && self->early[end] >= 0) {
        end++;
    }
    Py_ssize_t n = end - start;
    Py_ssize_t *batch = PyMem_Malloc((size_t)(n > 0 ? n : 1) *
                                     sizeof(Py_ssize_t));
    if (batch == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (n > 0) {
        memcpy(batch, self->early + start, (size_t)n * sizeof(Py_ssize_t));
    }
    self->early_head = end + 1;
    if (self->early_head >= self->nearly) {
        PyMem_Free(self->early);
        self->early = NULL;
        self->nearly = 0;
        self->early_head = 0;
    }
    PyObject *children = Py_XNewRef(self->children);
    int r = 0;
    for (Py_ssize_t i = 0; i < n && r == 0 && children != NULL; i++) {
        PyObject *fut = PyList_GET_ITEM(children, batch[i]);
        Py_INCREF(fut);
        int is_last = ++self->nfinished == self->nfuts && !self->aborted;
        r = fw_graph_discard(self->st, fut, self->graph_waiter);
        if (r == 0) {
            r = core_child_done(self, fut, batch[i], is_last);
        }
        Py_DECREF(fut);
    }
    Py_XDECREF(children);
    PyMem_Free(batch);
    return r;
}

/* Called by the loop:
 *   core(fut)          -- a done-callback (callback mode);
 *   core(fut, is_last) -- a wrapped child's completion;
 *   core()             -- the batch of children done at creation (3.11). */
static PyObject *
core_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                PyObject *kwnames)
{
    GatherCore *self = Core_CAST(op);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    int r;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "gather callback takes no keyword arguments");
        return NULL;
    }
    Py_INCREF(op);
    if (nargs == 0) {
        self->batch_scheduled = 0;
        r = core_process_early(self);
    }
    else if (nargs == 1) {
        int is_last = ++self->nfinished == self->nfuts && !self->aborted;
        r = fw_graph_discard(self->st, args[0], self->graph_waiter);
        if (r == 0) {
            r = core_child_done(self, args[0], -1, is_last);
        }
    }
    else if (nargs == 2) {
        r = fw_graph_discard(self->st, args[0], self->graph_waiter);
        if (r == 0) {
            r = core_child_done(self, args[0], -1, args[1] == Py_True);
        }
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "gather callback takes at most 2 arguments");
        r = -1;
    }
    Py_DECREF(op);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

/* A wrapped child's coroutine finished (value != NULL: it returned). */
static int
core_wrapped_finished(PyObject *owner, Py_ssize_t pos, PyObject *value,
                      PyObject *Py_UNUSED(exc))
{
    GatherCore *self = Core_CAST(owner);
    fw_state *st = self->st;
    if (self->constructing) {
        /* Finished inside create_task (eager task factory): processed like
         * the stdlib's done_futs once the outer future exists. */
        if (value != NULL) {
            self->values[pos] = Py_NewRef(value);
        }
        return 0;
    }
    if (self->children == NULL) {
        return 0;
    }
    PyObject *task = PyList_GET_ITEM(self->children, pos);
    if (task == NULL) {
        return 0;
    }
    int is_last = 0;
    int deciding = 1;
    if (!self->aborted) {
        is_last = ++self->nfinished == self->nfuts;
        if (value != NULL) {
            /* A task cancelled during its last step is cancelled even
             * though its coroutine returned (Task.__step: _must_cancel). */
            PyObject *must = PyObject_GetAttr(task, st->str_must_cancel);
            int must_cancel = 1;
            if (must == NULL) {
                PyErr_Clear();
            }
            else {
                must_cancel = must != Py_False;
                Py_DECREF(must);
            }
            if (!must_cancel && self->values != NULL) {
                self->values[pos] = Py_NewRef(value);
            }
            deciding = is_last || (must_cancel && !self->return_exceptions);
        }
    }
    else if (value != NULL) {
        deciding = 0; /* nothing to retrieve */
    }
    if (!deciding) {
        if (self->graph_waiter == NULL) {
            return 0;
        }
        /* 3.14+: the stdlib's done-callback would remove the child's
         * call-graph edge in the next iteration: so does a loop callback
         * of _asyncio's own future_discard_from_awaited_by. */
        PyObject *args[2] = {task, self->graph_waiter};
        return fw_call_soon(st, self->loop, st->awaited_by_discard, args, 2);
    }
    PyObject *args[2] = {task, is_last ? Py_True : Py_False};
    return fw_call_soon(st, self->loop, owner, args, 2);
}

/* Read like the stdlib's closure where a Task's repr lists its callbacks:
 * cb=[gather.<locals>._done_callback()]. */
static PyObject *
core_get_qualname(PyObject *op, void *closure)
{
    return PyUnicode_FromString((const char *)closure);
}

static PyGetSetDef core_getset[] = {
    {"__qualname__", core_get_qualname, NULL, NULL,
     "gather.<locals>._done_callback"},
    {"__name__", core_get_qualname, NULL, NULL, "_done_callback"},
    {NULL},
};

static PyMemberDef core_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(GatherCore, vectorcall),
     Py_READONLY},
    {NULL},
};

static PyType_Slot core_slots[] = {
    {Py_tp_doc, (void *)"State of one fastwait.gather() call (internal)."},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, core_members},
    {Py_tp_getset, core_getset},
    {0, NULL},
};

static PyType_Spec core_spec = {
    .name = "fastwait._fastwait._GatherCore",
    .basicsize = sizeof(GatherCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = core_slots,
};

static GatherCore *
core_new(fw_state *st, Py_ssize_t nargs, int return_exceptions, int wrapped)
{
    GatherCore *self = PyObject_GC_New(GatherCore, st->GatherCoreType);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = core_vectorcall;
    self->st = st;
    self->outer = NULL;
    self->loop = NULL;
    self->values = NULL;
    self->first = NULL;
    self->early = NULL;
    self->nearly = 0;
    self->early_head = 0;
    self->nargs = nargs;
    self->nfuts = 0;
    self->nfinished = 0;
    self->return_exceptions = (char)return_exceptions;
    self->wrapped = (char)wrapped;
    self->constructing = 1;
    self->aborted = 0;
    self->batch_scheduled = 0;
    self->graph_waiter = NULL;
    self->children = PyList_New(nargs);
    PyObject_GC_Track(self);
    if (self->children == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->values = PyMem_Calloc((size_t)nargs, sizeof(PyObject *));
    if (self->values == NULL) {
        Py_DECREF(self);
        PyErr_NoMemory();
        return NULL;
    }
    return self;
}

/* Remember that the child at `pos` was done when gather() created it.
 * On 3.11 the stdlib's callbacks for these run in the next iteration, each
 * at the place where gather() scheduled it: one loop callback serves a
 * batch of them, at the place of its first, until gather() schedules
 * something else (a task for a later argument); the next one starts a new
 * batch (core_end_early_batch), so that the callbacks keep their places
 * relative to the tasks' first steps. */
static int
core_add_early(GatherCore *self, Py_ssize_t pos)
{
    if (self->early == NULL) {
        /* Room for a -1 after each position. */
        self->early = PyMem_Malloc(2 * (size_t)self->nargs *
                                   sizeof(Py_ssize_t));
        if (self->early == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    self->early[self->nearly++] = pos;
    if (!self->st->gather_done_shortcut && !self->batch_scheduled) {
        if (fw_call_soon(self->st, self->loop, (PyObject *)self, NULL, 0) <
            0) {
            return -1;
        }
        self->batch_scheduled = 1;
    }
    return 0;
}

/* gather() scheduled something else (3.11): later children done at
 * creation go into a new batch. */
static void
core_end_early_batch(GatherCore *self)
{
    if (self->batch_scheduled) {
        self->early[self->nearly++] = -1;
        self->batch_scheduled = 0;
    }
}

/* Position `pos` repeats the child first seen at `first_pos`. */
static int
core_add_duplicate(GatherCore *self, Py_ssize_t pos, Py_ssize_t first_pos)
{
    if (self->first == NULL) {
        self->first = PyMem_Malloc((size_t)self->nargs * sizeof(Py_ssize_t));
        if (self->first == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < pos; i++) {
            self->first[i] = i;
        }
    }
    self->first[pos] = first_pos;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The stdlib's arg_to_fut dict, for finding duplicate arguments.
 *
 * Native coroutines and asyncio's own Futures and Tasks hash and compare
 * by identity, so for them a table of pointers gives the dict's answers
 * without a trip through Python hashing; any other argument goes through a
 * real dict (its __hash__ and __eq__ run, and unhashable ones raise the
 * dict's TypeError). */

typedef struct {
    PyObject **keys;    /* open addressing, NULL = empty */
    Py_ssize_t *pos;
    size_t mask;
    PyObject *dict;     /* other arguments: arg -> position */
} ArgIndex;

static int
arg_by_identity(fw_state *st, PyObject *arg)
{
    PyTypeObject *tp = Py_TYPE(arg);
    return PyCoro_CheckExact(arg) || tp == st->FutureType ||
           tp == st->TaskType;
}

static inline size_t
ptr_slot(const ArgIndex *ix, PyObject *key)
{
    uint64_t h = (uint64_t)(uintptr_t)key;
    h = (h >> 4) * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h ^ (h >> 29)) & ix->mask;
}

/* Returns the first position of arg, -1 if unseen, -2 on error. */
static Py_ssize_t
arg_index_find(fw_state *st, ArgIndex *ix, PyObject *arg)
{
    if (arg_by_identity(st, arg)) {
        if (ix->keys == NULL) {
            return -1;
        }
        for (size_t i = ptr_slot(ix, arg);; i = (i + 1) & ix->mask) {
            if (ix->keys[i] == arg) {
                return ix->pos[i];
            }
            if (ix->keys[i] == NULL) {
                return -1;
            }
        }
    }
    /* The lookup hashes it: an unhashable argument raises the dict's own
     * TypeError here (3.14: "cannot use 'X' as a dict key ..."), as in the
     * stdlib's `arg not in arg_to_fut`. */
    if (ix->dict == NULL && (ix->dict = PyDict_New()) == NULL) {
        return -2;
    }
    PyObject *p = PyDict_GetItemWithError(ix->dict, arg);
    if (p == NULL) {
        return PyErr_Occurred() ? -2 : -1;
    }
    return PyLong_AsSsize_t(p);
}

static int
arg_index_add(fw_state *st, ArgIndex *ix, PyObject *arg, Py_ssize_t pos,
              Py_ssize_t nargs)
{
    if (arg_by_identity(st, arg)) {
        if (ix->keys == NULL) {
            size_t cap = 8;
            while (cap < (size_t)nargs * 2) {
                cap <<= 1;
            }
            ix->keys = PyMem_Calloc(cap, sizeof(PyObject *));
            ix->pos = PyMem_Malloc(cap * sizeof(Py_ssize_t));
            if (ix->keys == NULL || ix->pos == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            ix->mask = cap - 1;
        }
        size_t i = ptr_slot(ix, arg);
        while (ix->keys[i] != NULL) {
            i = (i + 1) & ix->mask;
        }
        ix->keys[i] = arg; /* borrowed: the caller's arguments outlive us */
        ix->pos[i] = pos;
        return 0;
    }
    if (ix->dict == NULL && (ix->dict = PyDict_New()) == NULL) {
        return -1;
    }
    PyObject *p = PyLong_FromSsize_t(pos);
    if (p == NULL) {
        return -1;
    }
    int r = PyDict_SetItem(ix->dict, arg, p);
    Py_DECREF(p);
    return r;
}

static void
arg_index_free(ArgIndex *ix)
{
    PyMem_Free(ix->keys);
    PyMem_Free(ix->pos);
    Py_CLEAR(ix->dict);
}

/* ------------------------------------------------------------------ */
/* gather() */

PyObject *
fw_ensure_future(fw_state *st, PyObject *arg, PyObject *loop)
{
    int isfut = fw_isfuture(st, arg);
    if (isfut < 0) {
        return NULL;
    }
    if (isfut) {
        if (loop != NULL) {
            PyObject *fut_loop = fw_get_loop(st, arg);
            if (fut_loop == NULL) {
                return NULL;
            }
            Py_DECREF(fut_loop);
            if (fut_loop != loop) {
                PyErr_SetString(PyExc_ValueError,
                                "The future belongs to a different loop "
                                "than the one specified as the loop argument");
                return NULL;
            }
        }
        return Py_NewRef(arg);
    }
    if (!PyCoro_CheckExact(arg)) {
        /* Other coroutine types and awaitables: the stdlib's own code
         * (iscoroutine, awaitable wrapping, the TypeError). */
        PyObject *stack[2] = {arg, loop != NULL ? loop : Py_None};
        return PyObject_Vectorcall(st->ensure_future, stack, 1, st->kw_loop);
    }
    PyObject *owned_loop = NULL;
    if (loop == NULL) {
        owned_loop = PyObject_CallNoArgs(st->get_event_loop);
        if (owned_loop == NULL) {
            return NULL;
        }
        loop = owned_loop;
    }
    PyObject *task = PyObject_CallMethodOneArg(loop, st->str_create_task, arg);
    Py_XDECREF(owned_loop);
    if (task == NULL) {
        fw_close_unscheduled(st, arg);
    }
    return task;
}

/* Create the child of argument `pos`.  Returns a new reference. */
static PyObject *
core_make_child(GatherCore *self, PyObject *arg, Py_ssize_t pos)
{
    fw_state *st = self->st;
    PyObject *fut;
    if (self->wrapped) {
        PyObject *wrapper = fw_child_new(st, arg, (PyObject *)self, pos,
                                         core_wrapped_finished);
        if (wrapper == NULL) {
            return NULL;
        }
        fut = PyObject_CallMethodOneArg(self->loop, st->str_create_task,
                                        wrapper);
        if (fut == NULL) {
            fw_child_detach(wrapper);
            fw_close_unscheduled(st, arg);
            Py_DECREF(wrapper);
            return NULL;
        }
        int finished = fw_child_finished(wrapper);
        Py_DECREF(wrapper);
        if (finished) {
            /* Done inside create_task (eager): like the stdlib's done_futs.
             * A task cancelled in that step is not a success. */
            int cancelled = fw_fut_bool(st, fut, FW_CANCELLED);
            if (cancelled < 0) {
                Py_DECREF(fut);
                return NULL;
            }
            if (cancelled) {
                Py_CLEAR(self->values[pos]);
            }
        }
        if (PyObject_SetAttr(fut, st->str_log_destroy_pending, Py_False) <
                0 ||
            (finished ? core_add_early(self, pos)
                      : fw_graph_add(st, fut, self->graph_waiter)) < 0) {
            Py_DECREF(fut);
            return NULL;
        }
        return fut;
    }

    fut = fw_ensure_future(st, arg, self->loop);
    if (fut == NULL) {
        return NULL;
    }
    if (self->loop == NULL) {
        self->loop = fw_get_loop(st, fut);
        if (self->loop == NULL) {
            goto fail;
        }
    }
    if (fut != arg) {
        /* A task for a coroutine or awaitable: its first step is now
         * scheduled. */
        core_end_early_batch(self);
        if (PyObject_SetAttr(fut, st->str_log_destroy_pending, Py_False) <
            0) {
            goto fail;
        }
    }
    int done = fw_fut_bool(st, fut, FW_DONE);
    if (done < 0) {
        goto fail;
    }
    if (done ? core_add_early(self, pos)
             : (fw_graph_add(st, fut, self->graph_waiter) < 0 ||
                fw_add_done_callback(st, fut, (PyObject *)self) < 0)) {
        goto fail;
    }
    return fut;
fail:
    Py_DECREF(fut);
    return NULL;
}

static PyObject *
gather_empty(fw_state *st)
{
    PyObject *loop = PyObject_CallNoArgs(st->get_event_loop);
    if (loop == NULL) {
        return NULL;
    }
    PyObject *outer = PyObject_CallMethodNoArgs(loop, st->str_create_future);
    Py_DECREF(loop);
    if (outer == NULL) {
        return NULL;
    }
    PyObject *empty = PyList_New(0);
    PyObject *r = empty == NULL ? NULL : PyObject_CallMethodOneArg(
                                             outer, st->str_set_result, empty);
    Py_XDECREF(empty);
    if (r == NULL) {
        Py_DECREF(outer);
        return NULL;
    }
    Py_DECREF(r);
    return outer;
}

static PyObject *
gather_impl(fw_state *st, PyObject *const *args, Py_ssize_t n,
            int return_exceptions)
{
    if (n == 0) {
        return gather_empty(st);
    }

    /* 3.14+: loop = events._get_running_loop(); cur_task =
     * current_task(loop) when it is not None.  The running loop is then
     * the loop of every child (a future of another loop is rejected even
     * as the first argument). */
    PyObject *running = NULL, *graph_waiter = NULL;
    if (st->graph_edges) {
        running = PyObject_CallNoArgs(st->get_running_loop_or_none);
        if (running == NULL) {
            return NULL;
        }
        if (running == Py_None) {
            Py_CLEAR(running);
        }
        else if (fw_graph_waiter(st, running, &graph_waiter) < 0) {
            Py_DECREF(running);
            return NULL;
        }
    }

    /* Wrapped mode needs every argument to be a native coroutine and a
     * loop whose create_task runs our wrapper as is. */
    int wrapped = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyCoro_CheckExact(args[i])) {
            wrapped = 0;
            break;
        }
    }
    PyObject *loop = running;
    if (wrapped) {
        /* ensure_future(coro) with no loop: events.get_event_loop(). */
        if (loop == NULL) {
            loop = PyObject_CallNoArgs(st->get_event_loop);
            if (loop == NULL) {
                return NULL;
            }
        }
        wrapped = fw_loop_runs_wrappers(st, loop);
        if (wrapped < 0) {
            Py_DECREF(loop);
            Py_XDECREF(graph_waiter);
            return NULL;
        }
    }

    GatherCore *core = core_new(st, n, return_exceptions, wrapped);
    if (core == NULL) {
        Py_XDECREF(loop);
        Py_XDECREF(graph_waiter);
        return NULL;
    }
    core->loop = loop; /* may be NULL: taken from the first child */
    core->graph_waiter = graph_waiter;
    ArgIndex arg_to_pos = {NULL, NULL, 0, NULL};
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *arg = args[i];
        Py_ssize_t first_pos = arg_index_find(st, &arg_to_pos, arg);
        if (first_pos == -2) {
            goto fail;
        }
        if (first_pos >= 0) {
            /* A duplicate: the same child again. */
            if (core_add_duplicate(core, i, first_pos) < 0) {
                goto fail;
            }
            PyObject *fut = PyList_GET_ITEM(core->children, first_pos);
            PyList_SET_ITEM(core->children, i, Py_NewRef(fut));
            continue;
        }
        PyObject *fut = core_make_child(core, arg, i);
        if (fut == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(core->children, i, fut);
        core->nfuts++;
        if (core->first != NULL) {
            core->first[i] = i;
        }
        if (arg_index_add(st, &arg_to_pos, arg, i, n) < 0) {
            goto fail;
        }
    }
    arg_index_free(&arg_to_pos);

    PyObject *loop_arg = core->loop;
    PyObject *outer = PyObject_Vectorcall((PyObject *)st->GatheringFutureType,
                                          &loop_arg, 0, st->kw_loop);
    if (outer == NULL) {
        goto fail;
    }
    GF(outer)->children = Py_NewRef(core->children);
    core->outer = Py_NewRef(outer);
    core->constructing = 0;
    if (st->gather_done_shortcut && core->nearly > 0 &&
        core_process_early(core) < 0) {
        Py_DECREF(outer);
        Py_DECREF(core);
        return NULL;
    }
    Py_DECREF(core);
    return outer;

fail:
    arg_index_free(&arg_to_pos);
    /* Children created so far keep running, and their completions are
     * handled as the stdlib's callbacks handle them with outer None.  On
     * 3.12+ the children that were done at creation are never processed
     * (the stdlib's done_futs loop is not reached); on 3.11 the batch
     * callback, if scheduled, still marks them retrieved. */
    core->aborted = 1;
    core->constructing = 0;
    if (st->gather_done_shortcut) {
        PyMem_Free(core->early);
        core->early = NULL;
        core->nearly = 0;
        core->early_head = 0;
    }
    Py_DECREF(core);
    return NULL;
}

PyDoc_STRVAR(
    gather_doc,
    "gather(*coros_or_futures, return_exceptions=False)\n--\n\n"
    "Return a future aggregating results from the given coroutines/futures.\n"
    "\n"
    "A drop-in replacement for asyncio.gather() with the semantics of the\n"
    "running Python version: coroutines are wrapped in tasks (duplicates\n"
    "collapsed); the result is the list of results in argument order; the\n"
    "first exception propagates unless return_exceptions is true, in which\n"
    "case exceptions are returned in the list; cancelling the returned\n"
    "future cancels every child.");

static PyObject *
gather(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
       PyObject *kwnames)
{
    fw_state *st = fw_get_state(module);
    int return_exceptions = 0;
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            if (PyUnicode_CompareWithASCIIString(key, "return_exceptions") !=
                0) {
                return fw_signature_error(st, "gather", NULL, args, nargs,
                                          kwnames);
            }
            return_exceptions = PyObject_IsTrue(args[nargs + i]);
            if (return_exceptions < 0) {
                return NULL;
            }
        }
    }
    return gather_impl(st, args, nargs, return_exceptions);
}

static PyMethodDef gather_methods[] = {
    {"gather", (PyCFunction)(void (*)(void))gather,
     METH_FASTCALL | METH_KEYWORDS, gather_doc},
    {NULL},
};

int
fw_gather_init(PyObject *module, fw_state *st)
{
    st->GatherCoreType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &core_spec, NULL);
    if (st->GatherCoreType == NULL) {
        return -1;
    }

    PyTypeObject *base = st->FutureType;
    PyType_Spec spec = {
        .name = "fastwait._fastwait._GatheringFuture",
        .basicsize = (int)(gfut_fields_offset(base) + sizeof(GatherFields)),
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
                 Py_TPFLAGS_IMMUTABLETYPE,
        .slots = gfut_slots,
    };
    st->GatheringFutureType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &spec, (PyObject *)base);
    if (st->GatheringFutureType == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "_GatheringFuture",
                              (PyObject *)st->GatheringFutureType) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, gather_methods);
}

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
#include <math.h>

/* ------------------------------------------------------------------ */
/* _GatheringFuture: asyncio.Future + our fields after the base's. */

typedef struct {
    PyObject *children; /* list, one entry per argument (duplicates kept) */
    PyObject *core;     /* gather(limit=, timeout=, eager=): the GatherCore,
                           whose cancel() differs (ext_cancel); else NULL */
    int cancel_requested;
} GatherFields;

static PyObject *ext_cancel(fw_state *st, PyObject *outer, PyObject *msg);

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
    Py_VISIT(GF(self)->core);
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
    Py_CLEAR(GF(self)->core);
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
    Py_CLEAR(GF(self)->core);
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
    if (GF(self)->core != NULL) {
        return ext_cancel(st, self, msg);
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

typedef struct GatherExt GatherExt;

enum {
    F_DIRECT = 1, /* eager: finished in its first step, no Task */
    F_CUT = 2,    /* unfinished when the deadline cancelled it */
    F_CLOSED = 4, /* never started, closed (or dropped) */
    F_FREED = 8,  /* limit: its coroutine finished, its slot is free
                     (before its Task's done-callback) */
};

struct GatherExt {
    Py_ssize_t limit;    /* 0: no limit */
    Py_ssize_t next;     /* no position before it holds a pending child */
    Py_ssize_t npending; /* never-started children not closed yet */
    PyObject **pending;  /* per position: the argument to start, or NULL */
    PyObject **excs;     /* per position: an F_DIRECT child's exception */
    unsigned char *flags; /* per (first) position: F_* */
    PyObject *slots;     /* limit: dict of the started children whose
                            done-callback has not run yet: future -> pos */
    Py_ssize_t nrunning; /* limit: started children holding a slot */
    PyObject *deadline;  /* fw_deadline_new's, until it fires or the outer
                            is done */
    PyObject *context;   /* eager: the caller's context, copied at the call */
    char eager;
    char eager_wrapped;  /* eager without limit on a loop that runs our
                            wrappers: a suspended child reports through
                            core_wrapped_finished, as in wrapped mode */
    char timed_out;      /* the deadline cut children short */
    char limit_wrapped;  /* limit on a loop that runs our wrappers: a
                            coroutine child runs in a child wrapper whose
                            finish frees its slot and starts the next child
                            inside the finishing child's own step */
    char base_loop;      /* limit: the loop's create_task and
                            get_task_factory are asyncio's own (see
                            ext_create_task) */
    char limit_direct;   /* limit_wrapped, no eager, every argument a
                            coroutine: no done-callback either, the child
                            wrapper's finish records the outcome (see
                            ext_limit_direct_finished) */
};


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
    /* gather(limit=, timeout=, eager=): their state; NULL for the drop-in
     * (every extra path is behind one test of this pointer). */
    GatherExt *ext;
} GatherCore;

/* A GatherCore with room for its GatherExt (gather(limit=, timeout=,
 * eager=) only: no second allocation). */
typedef struct {
    GatherCore core;
    GatherExt ext;
} GatherCoreExt;

#define Core_CAST(op) ((GatherCore *)(op))

static void ext_release(GatherCore *self, int cancel_deadline);
static int ext_retrieve_all(GatherCore *self);
static int ext_traverse(GatherCore *self, visitproc visit, void *arg);
static int ext_timed_out_child(GatherCore *self, PyObject *outer,
                               PyObject *fut, int is_last);
static int ext_set_results(GatherCore *self, PyObject *outer);
static int ext_direct_done(GatherCore *self, Py_ssize_t pos, int is_last);
static int ext_child_finished(GatherCore *self, PyObject *fut);
static int ext_after(GatherCore *self);
static int ext_forget_child(GatherCore *self, PyObject *fut, Py_ssize_t pos);

static void
core_release(GatherCore *self)
{
    /* Every child has been processed: nothing will call us again. */
    if (self->ext != NULL) {
        ext_release(self, 1);
    }
    Py_CLEAR(self->outer);
    Py_CLEAR(self->children);
    Py_CLEAR(self->loop);
    fw_ref_array_free(&self->values, self->nargs);
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
    int r = fw_ref_array_visit(self->values, self->nargs, visit, arg);
    if (r != 0) {
        return r;
    }
    Py_VISIT(self->graph_waiter);
    if (self->ext != NULL) {
        return ext_traverse(self, visit, arg);
    }
    return 0;
}

static int
core_clear(PyObject *op)
{
    GatherCore *self = Core_CAST(op);
    if (self->ext != NULL) {
        ext_release(self, 0);
        self->ext = NULL; /* the storage is ours (GatherCoreExt) */
    }
    core_release(self);
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
        if (fut != NULL && fut != Py_None) {
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
    if (self->ext != NULL && self->ext->timed_out) {
        r = ext_timed_out_child(self, outer, fut, is_last);
        goto finish;
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

    if (is_last && self->ext != NULL) {
        r = ext_set_results(self, outer);
    }
    else if (is_last) {
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
        if (fut == Py_None) {
            /* eager=True: finished in its first step, no Task. */
            r = ext_direct_done(self, batch[i], is_last);
            Py_DECREF(fut);
            continue;
        }
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
 *   core(fut, is_last, pos) -- a limit_direct child's completion;
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
        if (r == 0 && self->ext != NULL) {
            r = ext_child_finished(self, args[0]);
        }
    }
    else if (nargs == 2) {
        r = fw_graph_discard(self->st, args[0], self->graph_waiter);
        if (r == 0) {
            r = core_child_done(self, args[0], -1, args[1] == Py_True);
        }
        if (r == 0 && self->ext != NULL) {
            r = ext_after(self);
        }
    }
    else if (nargs == 3) {
        /* limit_direct: a completion that decides something (see
         * ext_limit_direct_finished); its slot is free already. */
        Py_ssize_t pos = PyLong_AsSsize_t(args[2]);
        r = pos == -1 && PyErr_Occurred() ? -1 : 0;
        if (r == 0) {
            r = fw_graph_discard(self->st, args[0], self->graph_waiter);
        }
        if (r == 0) {
            r = core_child_done(self, args[0], pos, args[1] == Py_True);
        }
        if (r == 0 && self->ext != NULL) {
            r = ext_forget_child(self, args[0], pos);
        }
        if (r == 0 && self->ext != NULL) {
            r = ext_after(self);
        }
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "gather callback takes at most 3 arguments");
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
            int must_cancel = fw_task_must_cancel(st, task) != 0;
            if (!must_cancel && self->values != NULL) {
                self->values[pos] = Py_NewRef(value);
            }
            deciding = is_last || (must_cancel && !self->return_exceptions);
        }
    }
    else if (value != NULL) {
        deciding = 0; /* nothing to retrieve */
    }
    if (self->ext != NULL && self->ext->timed_out && !self->aborted) {
        /* After the deadline only the last completion matters: the others'
         * exceptions are retrieved when the outer ends
         * (ext_finish_timed_out). */
        deciding = is_last;
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
static PyGetSetDef core_getset[] = {
    {"__qualname__", fw_get_closure_text, NULL, NULL,
     "gather.<locals>._done_callback"},
    {"__name__", fw_get_closure_text, NULL, NULL, "_done_callback"},
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
    .basicsize = sizeof(GatherCoreExt),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = core_slots,
};

static GatherCore *
core_new(fw_state *st, Py_ssize_t nargs, int return_exceptions, int wrapped)
{
    /* One size for all (the type's basicsize): room for the GatherExt of
     * gather(limit=, timeout=, eager=). */
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
    self->ext = NULL;
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
        /* Room for a -1 after each position (never written with
         * limit=/timeout=/eager=: their early children are processed
         * within the call). */
        size_t room = self->ext != NULL ? 1 : 2;
        self->early = PyMem_Malloc(room * (size_t)self->nargs *
                                   sizeof(Py_ssize_t));
        if (self->early == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    self->early[self->nearly++] = pos;
    if (!self->st->gather_done_shortcut && !self->batch_scheduled &&
        self->ext == NULL) {
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
    PyObject *const *args; /* the call's arguments (borrowed: they outlive
                              the index) */
    uint32_t *slots;    /* open addressing: 1 + the position of an argument
                           in args, 0 = empty (4 bytes a slot: at N =
                           100,000 the table is 1 MB of fresh pages, not
                           4 MB of pointers and positions) */
    size_t mask;
    unsigned shift;     /* log2(mask + 1) */
    int small;          /* positions fit the slots */
    size_t free_slot;   /* where the argument arg_index_find() did not
                           find goes (SIZE_MAX: no such slot) */
    PyObject *dict;     /* other arguments: arg -> position */
} ArgIndex;

static void
arg_index_init(ArgIndex *ix, PyObject *const *args, Py_ssize_t nargs)
{
    ix->args = args;
    ix->slots = NULL;
    ix->mask = 0;
    ix->shift = 0;
    ix->small = (size_t)nargs < UINT32_MAX;
    ix->free_slot = SIZE_MAX;
    ix->dict = NULL;
}

static int
arg_by_identity(fw_state *st, const ArgIndex *ix, PyObject *arg)
{
    PyTypeObject *tp = Py_TYPE(arg);
    return ix->small && (PyCoro_CheckExact(arg) || tp == st->FutureType ||
                         tp == st->TaskType);
}

/* Objects allocated one after another (the coroutines of a list
 * comprehension) get slots in the same order, so that filling the table
 * walks it nearly in order: with a hash that scatters them, every argument
 * was a cache miss once the table outgrew the cache (at N = 100,000 a
 * fifth of gather(eager=True)'s time).  Each window of 16 * capacity bytes
 * of addresses is shifted by its own pseudo-random offset, so that windows
 * do not pile up on the same slots. */
static inline size_t
ptr_slot(const ArgIndex *ix, PyObject *key)
{
    uint64_t a = (uint64_t)(uintptr_t)key >> 4;
    uint64_t w = (a >> ix->shift) * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(a + (w >> 32)) & ix->mask;
}

/* Returns the first position of arg, -1 if unseen, -2 on error. */
static Py_ssize_t
arg_index_find(fw_state *st, ArgIndex *ix, PyObject *arg)
{
    ix->free_slot = SIZE_MAX;
    if (arg_by_identity(st, ix, arg)) {
        if (ix->slots == NULL) {
            return -1;
        }
        for (size_t i = ptr_slot(ix, arg);; i = (i + 1) & ix->mask) {
            uint32_t s = ix->slots[i];
            if (s == 0) {
                ix->free_slot = i; /* for arg_index_add: no second probe */
                return -1;
            }
            if (ix->args[s - 1] == arg) {
                return (Py_ssize_t)s - 1;
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

/* args[pos], not in the index yet, goes in (right after
 * arg_index_find(args[pos]): the index is only ever filled by one loop). */
static int
arg_index_add(fw_state *st, ArgIndex *ix, PyObject *arg, Py_ssize_t pos,
              Py_ssize_t nargs)
{
    if (ix->free_slot != SIZE_MAX) {
        ix->slots[ix->free_slot] = (uint32_t)pos + 1;
        ix->free_slot = SIZE_MAX;
        return 0;
    }
    if (arg_by_identity(st, ix, arg)) {
        if (ix->slots == NULL) {
            size_t cap = fw_ptr_table_capacity(nargs);
            ix->slots = PyMem_Calloc(cap, sizeof(uint32_t));
            if (ix->slots == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            ix->mask = cap - 1;
            while (((size_t)1 << ix->shift) < cap) {
                ix->shift++;
            }
        }
        size_t i = ptr_slot(ix, arg);
        while (ix->slots[i] != 0) {
            i = (i + 1) & ix->mask;
        }
        ix->slots[i] = (uint32_t)pos + 1;
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
    PyMem_Free(ix->slots);
    ix->slots = NULL;
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

/* Make the children of args[0:n] into core->children, in argument order:
 * each distinct argument becomes a child once (`make`), a duplicate shares
 * the first one's.  `ix` indexes the arguments seen; the caller frees it
 * (after a failure too: gather_ext_impl reads it then).  *failed_at is the
 * index being processed when it failed.  0, or -1 with an error. */
typedef PyObject *(*core_make_child_fn)(GatherCore *core, PyObject *arg,
                                        Py_ssize_t pos);

static int
core_add_children(fw_state *st, GatherCore *core, PyObject *const *args,
                  Py_ssize_t n, core_make_child_fn make, ArgIndex *ix,
                  Py_ssize_t *failed_at)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        *failed_at = i;
        PyObject *arg = args[i];
        Py_ssize_t first_pos = arg_index_find(st, ix, arg);
        if (first_pos == -2) {
            return -1;
        }
        if (first_pos >= 0) {
            /* A duplicate: the same child again. */
            if (core_add_duplicate(core, i, first_pos) < 0) {
                return -1;
            }
            PyObject *fut = PyList_GET_ITEM(core->children, first_pos);
            PyList_SET_ITEM(core->children, i, Py_NewRef(fut));
            continue;
        }
        PyObject *fut = make(core, arg, i);
        if (fut == NULL) {
            return -1;
        }
        PyList_SET_ITEM(core->children, i, fut);
        core->nfuts++;
        if (core->first != NULL) {
            core->first[i] = i;
        }
        if (arg_index_add(st, ix, arg, i, n) < 0) {
            return -1;
        }
    }
    *failed_at = n;
    return 0;
}

/* The children are made: the _GatheringFuture that gathers them, on the
 * core's loop (`keep_core`: the future holds the core too, for its
 * cancel()).  A new reference, or NULL with an error. */
static PyObject *
core_make_outer(fw_state *st, GatherCore *core, int keep_core)
{
    PyObject *loop_arg = core->loop;
    PyObject *outer = PyObject_Vectorcall((PyObject *)st->GatheringFutureType,
                                          &loop_arg, 0, st->kw_loop);
    if (outer == NULL) {
        return NULL;
    }
    GF(outer)->children = Py_NewRef(core->children);
    if (keep_core) {
        GF(outer)->core = Py_NewRef(core);
    }
    core->outer = Py_NewRef(outer);
    core->constructing = 0;
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
    ArgIndex arg_to_pos;
    arg_index_init(&arg_to_pos, args, n);
    Py_ssize_t failed_at;
    if (core_add_children(st, core, args, n, core_make_child, &arg_to_pos,
                          &failed_at) < 0) {
        goto fail;
    }
    arg_index_free(&arg_to_pos);

    PyObject *outer = core_make_outer(st, core, 0);
    if (outer == NULL) {
        goto fail;
    }
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

/* ------------------------------------------------------------------ */
/* gather(limit=, timeout=, eager=) -- docs/extras.md.
 *
 * The drop-in never gets here (GatherCore.ext is NULL).  With limit= or
 * eager= every child runs in callback mode (one done-callback per child);
 * with limit= on a loop that runs our wrappers a coroutine child also runs
 * in a child wrapper whose finish, inside the child's last step, frees its
 * slot and starts the next child (the same loop iteration; elsewhere the
 * done-callback starts it, one iteration later); timeout= alone keeps
 * wrapped mode when the drop-in would use it, so that a deadline that does
 * not fire costs only the deadline itself (an entry in the loop's deadline
 * heap, timeout.c).
 *
 * Children that have no future get Py_None in the children list:
 *   - never-started ones (beyond the limit), their argument in `pending`;
 *   - eager children that finished in their first step (F_DIRECT), their
 *     outcome in values[] / excs[];
 *   - duplicates of either (positions are resolved through `first`).
 * Every never-started child counts in nfuts; closing one counts it
 * finished, so "every child finished" stays nfinished == nfuts. */

/* fw_eager_start() is eager.c's (another part); gather builds without it
 * and then refuses eager=True. */
#ifdef FW_HAVE_EAGER_START
int fw_eager_start(fw_state *st, PyObject *loop, PyObject *coro,
                   PyObject *base_ctx, PyObject *owner, Py_ssize_t index,
                   fw_finish_fn finish, PyObject **value, PyObject **exc,
                   PyObject **task);
#endif

static const char not_awaitable_msg[] =
    "An asyncio.Future, a coroutine or an awaitable is required";

static void
ext_release(GatherCore *self, int cancel_deadline)
{
    GatherExt *ext = self->ext;
    if (ext->deadline != NULL) {
        PyObject *d = ext->deadline;
        ext->deadline = NULL;
        if (cancel_deadline) {
            PyObject *exc = fw_err_fetch();
            if (fw_deadline_cancel(self->st, d) < 0) {
                PyErr_WriteUnraisable(d);
            }
            if (exc != NULL) {
                fw_err_restore(exc);
            }
        }
        Py_DECREF(d);
    }
    if (ext->pending != NULL) {
        for (Py_ssize_t i = 0; i < self->nargs; i++) {
            Py_CLEAR(ext->pending[i]);
        }
        PyMem_Free(ext->pending);
        ext->pending = NULL;
        ext->npending = 0;
    }
    if (ext->excs != NULL) {
        for (Py_ssize_t i = 0; i < self->nargs; i++) {
            Py_CLEAR(ext->excs[i]);
        }
        PyMem_Free(ext->excs);
        ext->excs = NULL;
    }
    PyMem_Free(ext->flags);
    ext->flags = NULL;
    Py_CLEAR(ext->slots);
    Py_CLEAR(ext->context);
}

static int
ext_traverse(GatherCore *self, visitproc visit, void *arg)
{
    GatherExt *ext = self->ext;
    for (Py_ssize_t i = 0; ext->pending != NULL && i < self->nargs; i++) {
        Py_VISIT(ext->pending[i]);
    }
    for (Py_ssize_t i = 0; ext->excs != NULL && i < self->nargs; i++) {
        Py_VISIT(ext->excs[i]);
    }
    Py_VISIT(ext->slots);
    Py_VISIT(ext->deadline);
    Py_VISIT(ext->context);
    return 0;
}

static unsigned char *
ext_flags(GatherCore *self)
{
    GatherExt *ext = self->ext;
    if (ext->flags == NULL) {
        ext->flags = PyMem_Calloc((size_t)self->nargs, 1);
        if (ext->flags == NULL) {
            PyErr_NoMemory();
        }
    }
    return ext->flags;
}

static PyObject **
ext_array(GatherCore *self, PyObject ***parray)
{
    if (*parray == NULL) {
        *parray = PyMem_Calloc((size_t)self->nargs, sizeof(PyObject *));
        if (*parray == NULL) {
            PyErr_NoMemory();
        }
    }
    return *parray;
}

/* asyncio.iscoroutine(obj): -1 error, 0/1. */
static int
ext_iscoroutine(fw_state *st, PyObject *obj)
{
    if (PyCoro_CheckExact(obj)) {
        return 1;
    }
    PyObject *r = PyObject_CallOneArg(st->iscoroutine, obj);
    if (r == NULL) {
        return -1;
    }
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

static Py_ssize_t
ext_first(GatherCore *self, Py_ssize_t pos)
{
    return self->first != NULL ? self->first[pos] : pos;
}

/* Close every never-started child (coroutines get close(), other
 * awaitables are dropped); each counts as finished.  The number closed,
 * or -1 (all are closed even then; the first error is kept). */
static Py_ssize_t
ext_close_pending(GatherCore *self)
{
    GatherExt *ext = self->ext;
    if (ext == NULL || ext->npending == 0) {
        return 0;
    }
    unsigned char *flags = ext_flags(self);
    if (flags == NULL) {
        return -1;
    }
    PyObject *error = NULL;
    Py_ssize_t n = 0;
    for (Py_ssize_t i = ext->next; i < self->nargs && ext->npending > 0;
         i++) {
        PyObject *arg = ext->pending[i];
        if (arg == NULL) {
            continue;
        }
        ext->pending[i] = NULL;
        ext->npending--;
        flags[i] |= F_CLOSED;
        self->nfinished++;
        n++;
        int r = ext_iscoroutine(self->st, arg);
        if (r > 0) {
            PyObject *res = PyObject_CallMethodNoArgs(arg, self->st->str_close);
            Py_XDECREF(res);
            r = res == NULL ? -1 : 0;
        }
        if (r < 0) {
            PyObject *e = fw_err_fetch();
            if (error == NULL) {
                error = e;
            }
            else {
                Py_XDECREF(e);
            }
        }
        Py_DECREF(arg);
    }
    if (error != NULL) {
        fw_err_restore(error);
        return -1;
    }
    return n;
}

/* The position of the last child in argument order that has a future
 * (-1: none). */
static Py_ssize_t
ext_last_child(GatherCore *self)
{
    for (Py_ssize_t i = PyList_GET_SIZE(self->children) - 1; i >= 0; i--) {
        PyObject *fut = PyList_GET_ITEM(self->children, i);
        if (fut != Py_None) {
            return i;
        }
    }
    return -1;
}

static int
set_exception_new(fw_state *st, PyObject *outer, PyObject *type)
{
    PyObject *exc = PyObject_CallNoArgs(type);
    if (exc == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(outer, st->str_set_exception,
                                            exc);
    Py_DECREF(exc);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* What a child future ended with, as gather's results list has it: a
 * cancelled child's place gets CancelledError(fut._cancel_message or ''),
 * a new one per place. */
static PyObject *
fut_outcome(fw_state *st, PyObject *fut)
{
    int cancelled = fw_fut_bool(st, fut, FW_CANCELLED);
    if (cancelled < 0) {
        return NULL;
    }
    if (cancelled) {
        PyObject *msg = PyObject_GetAttr(fut, st->str_cancel_message);
        if (msg == NULL) {
            return NULL;
        }
        if (msg == Py_None) {
            Py_SETREF(msg, PyUnicode_FromString(""));
            if (msg == NULL) {
                return NULL;
            }
        }
        PyObject *res = PyObject_CallOneArg(st->CancelledError, msg);
        Py_DECREF(msg);
        return res;
    }
    PyObject *res = fw_fut_call(st, fut, FW_EXCEPTION);
    if (res == Py_None) {
        Py_DECREF(res);
        res = fw_fut_call(st, fut, FW_RESULT);
    }
    return res;
}

/* A known result for the results list.  It is built once, when the core
 * is about to be released: without duplicates (no other position needs
 * it) the reference moves instead of being copied (at N = 100,000 each
 * incref here and decref in core_release was a cache miss on the result
 * object). */
static PyObject *
ext_take_value(GatherCore *self, Py_ssize_t u)
{
    PyObject *v = self->values[u];
    if (v == NULL) {
        return Py_NewRef(Py_None);
    }
    if (self->first == NULL) {
        self->values[u] = NULL;
        return v;
    }
    return Py_NewRef(v);
}

/* The results list: core_build_results plus children without a future
 * and TimeoutError() for the children the deadline cut short.  Called once,
 * with every child finished, just before the core is released. */
static PyObject *
ext_build_results(GatherCore *self)
{
    fw_state *st = self->st;
    GatherExt *ext = self->ext;
    Py_ssize_t n = PyList_GET_SIZE(self->children);
    PyObject *results = PyList_New(n);
    if (results == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t u = ext_first(self, i);
        PyObject *fut = PyList_GET_ITEM(self->children, u);
        int flags = ext->flags != NULL ? ext->flags[u] : 0;
        PyObject *res;
        if (fut == Py_None) {
            PyObject *exc = ext->excs != NULL ? ext->excs[u] : NULL;
            if (!(flags & F_DIRECT)) {
                res = PyObject_CallNoArgs(PyExc_TimeoutError);
            }
            else if (exc == NULL) {
                res = ext_take_value(self, u);
            }
            else if (PyObject_TypeCheck(exc, (PyTypeObject *)
                                                 st->CancelledError)) {
                /* As for a Task whose coroutine raised CancelledError:
                 * cancelled, no message. */
                PyObject *empty = PyUnicode_New(0, 0);
                res = empty == NULL ? NULL
                                    : PyObject_CallOneArg(st->CancelledError,
                                                          empty);
                Py_XDECREF(empty);
            }
            else {
                res = Py_NewRef(exc);
            }
        }
        else if (self->values[u] != NULL) {
            res = ext_take_value(self, u);
        }
        else {
            int cut = 0;
            if ((flags & F_CUT) && ext->timed_out) {
                cut = fw_fut_bool(st, fut, FW_CANCELLED);
                if (cut < 0) {
                    goto fail;
                }
            }
            res = cut ? PyObject_CallNoArgs(PyExc_TimeoutError)
                      : fut_outcome(st, fut);
        }
        if (res == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(results, i, res);
    }
    return results;
fail:
    Py_DECREF(results);
    return NULL;
}

/* The outer's end once every child finished (not timed out). */
static int
ext_set_results(GatherCore *self, PyObject *outer)
{
    fw_state *st = self->st;
    if (GF(outer)->cancel_requested) {
        /* gather builds the results list first: every exception is
         * retrieved. */
        if (ext_retrieve_all(self) < 0) {
            return -1;
        }
        Py_ssize_t last = ext_last_child(self);
        if (last < 0) {
            return set_exception_new(st, outer, st->CancelledError);
        }
        /* A child let go (eager first step, limit=): the CancelledError it
         * raised (what a Task hands out first), else a new one (as
         * _make_cancelled_error() of a Task that is not cancelled). */
        Py_ssize_t u = ext_first(self, last);
        PyObject *rec = self->ext->excs != NULL ? self->ext->excs[u] : NULL;
        int direct = self->ext->flags != NULL &&
                     (self->ext->flags[u] & F_DIRECT);
        if (rec != NULL &&
            !PyObject_TypeCheck(rec, (PyTypeObject *)st->CancelledError)) {
            rec = NULL;
        }
        if (rec == NULL && direct) {
            return set_exception_new(st, outer, st->CancelledError);
        }
        if (rec == NULL) {
            return set_cancelled_error(
                st, outer, PyList_GET_ITEM(self->children, last));
        }
        PyObject *r = PyObject_CallMethodOneArg(outer, st->str_set_exception,
                                                rec);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    PyObject *results = ext_build_results(self);
    if (results == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(outer, st->str_set_result,
                                            results);
    Py_DECREF(results);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* The outer's end once every child finished after the deadline fired.
 * Every child's exception is marked retrieved first (wrapped mode reports
 * only the last completion after the deadline). */
static int
ext_finish_timed_out(GatherCore *self, PyObject *outer)
{
    if (ext_retrieve_all(self) < 0) {
        return -1;
    }
    if (!GF(outer)->cancel_requested && !self->return_exceptions) {
        return set_exception_new(self->st, outer, PyExc_TimeoutError);
    }
    /* The results list, or the cancellation (it wins). */
    return ext_set_results(self, outer);
}

/* Every done child's exception is marked retrieved (as building gather's
 * results list does; wrapped mode reports only some completions). */
static int
ext_retrieve_all(GatherCore *self)
{
    fw_state *st = self->st;
    Py_ssize_t n = PyList_GET_SIZE(self->children);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *fut = PyList_GET_ITEM(self->children, i);
        if (fut == Py_None || ext_first(self, i) != i) {
            continue;
        }
        Py_INCREF(fut);
        int r = fw_fut_bool(st, fut, FW_DONE);
        if (r > 0) {
            r = fw_fut_bool(st, fut, FW_CANCELLED);
            if (r == 0) {
                PyObject *exc = fw_fut_call(st, fut, FW_EXCEPTION);
                r = exc == NULL ? -1 : 0;
                Py_XDECREF(exc);
            }
        }
        Py_DECREF(fut);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

/* A child finished after the deadline fired: its outcome is retrieved
 * (it never ends the outer early); the last one ends the outer. */
static int
ext_timed_out_child(GatherCore *self, PyObject *outer, PyObject *fut,
                    int is_last)
{
    fw_state *st = self->st;
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
    return is_last ? ext_finish_timed_out(self, outer) : 0;
}

/* An eager child that finished in its first step (F_DIRECT), processed as
 * core_child_done processes a done child. */
static int
ext_direct_done(GatherCore *self, Py_ssize_t pos, int is_last)
{
    fw_state *st = self->st;
    PyObject *outer = self->outer;
    PyObject *exc = self->ext->excs != NULL ? self->ext->excs[pos] : NULL;
    if (!is_last && (exc == NULL || self->return_exceptions)) {
        /* Whatever the outer's state, a child that neither fails the
         * outer nor ends it has nothing to do here: no outer.done() call
         * (the usual child of eager=True, ~270 instructions each). */
        return 0;
    }
    int r = 0;
    if (outer != NULL) {
        Py_INCREF(outer);
        int done = fw_fut_bool(st, outer, FW_DONE);
        if (done != 0) {
            r = done < 0 ? -1 : 0;
        }
        else if (self->ext->timed_out) {
            r = is_last ? ext_finish_timed_out(self, outer) : 0;
        }
        else if (exc != NULL && !self->return_exceptions) {
            /* A CancelledError it raised too: as outer.set_exception(
             * task._make_cancelled_error()) gives the raised one. */
            r = core_graph_discard_all(self);
            if (r == 0) {
                PyObject *res = PyObject_CallMethodOneArg(
                    outer, st->str_set_exception, exc);
                Py_XDECREF(res);
                r = res == NULL ? -1 : 0;
            }
        }
        else if (is_last) {
            r = ext_set_results(self, outer);
        }
        Py_DECREF(outer);
    }
    if (is_last) {
        core_release(self);
    }
    return r;
}

#ifdef FW_HAVE_EAGER_START
static int
ext_eager_finished(PyObject *owner, Py_ssize_t index, PyObject *value,
                   PyObject *exc)
{
    /* The child's Task has gather's done-callback: nothing to do here. */
    return 0;
}
#endif

/* The started child `fut` at `pos` holds a slot until it finishes. */
static int
ext_take_slot(GatherCore *self, PyObject *fut, Py_ssize_t pos)
{
    PyObject *p = PyLong_FromSsize_t(pos);
    if (p == NULL) {
        return -1;
    }
    int r = PyDict_SetItem(self->ext->slots, fut, p);
    Py_DECREF(p);
    if (r == 0) {
        self->ext->nrunning++;
    }
    return r;
}

static int ext_limit_finished(PyObject *owner, Py_ssize_t pos,
                              PyObject *value, PyObject *exc);
static int ext_limit_direct_finished(PyObject *owner, Py_ssize_t pos,
                                     PyObject *value, PyObject *exc);

/* loop.create_task(wrapper) for a limit= child.  On asyncio's own loop
 * (base_loop) with no task factory that is done here, as the TaskGroup
 * does (tg_loop_create_task): _check_closed(), then tasks.Task(wrapper,
 * loop=loop), read at each call.  No Python frame of create_task: in debug
 * mode the Task's _source_traceback is what create_task leaves (it deletes
 * its own frame).  The task factory may change between two starts: it is
 * read each time, from `_task_factory` (what get_task_factory() returns
 * there). */
static PyObject *
ext_create_task(GatherCore *self, PyObject *wrapper)
{
    fw_state *st = self->st;
    PyObject *loop = self->loop;
    if (self->ext->base_loop) {
        PyObject *factory = PyObject_GetAttr(loop, st->str_task_factory_attr);
        if (factory == NULL) {
            return NULL;
        }
        int none = factory == Py_None;
        Py_DECREF(factory);
        PyObject *closed = none ? PyObject_GetAttr(loop, st->str_closed_attr)
                                : NULL;
        if (none && closed == NULL) {
            return NULL;
        }
        int open = none && closed == Py_False;
        Py_XDECREF(closed);
        if (open) {
            PyObject *cls = fw_task_class(st);
            if (cls == NULL) {
                return NULL;
            }
            PyObject *args[2] = {wrapper, loop};
            PyObject *task = PyObject_Vectorcall(cls, args, 1, st->kw_loop);
            Py_DECREF(cls);
            return task;
        }
        /* A task factory, or closed (create_task raises it). */
    }
    return PyObject_CallMethodOneArg(loop, st->str_create_task, wrapper);
}

/* limit= on a loop that runs our wrappers: the coroutine `arg` at `pos`
 * runs in a child wrapper (its finish frees the slot), and its Task gets
 * gather's done-callback (callback mode) for its outcome.  As
 * core_make_child otherwise. */
static PyObject *
ext_start_wrapped(GatherCore *self, PyObject *arg, Py_ssize_t pos)
{
    fw_state *st = self->st;
    int direct = self->ext->limit_direct;
    PyObject *wrapper = fw_child_new(
        st, arg, (PyObject *)self, pos,
        direct ? ext_limit_direct_finished : ext_limit_finished);
    if (wrapper == NULL) {
        return NULL;
    }
    PyObject *fut = ext_create_task(self, wrapper);
    if (fut == NULL) {
        fw_child_detach(wrapper);
        fw_close_unscheduled(st, arg);
        Py_DECREF(wrapper);
        return NULL;
    }
    Py_DECREF(wrapper);
    core_end_early_batch(self);
    if (PyObject_SetAttr(fut, st->str_log_destroy_pending, Py_False) < 0) {
        goto fail;
    }
    int done = fw_fut_bool(st, fut, FW_DONE);
    if (done < 0) {
        goto fail;
    }
    /* Done inside create_task (eager task factory): no slot taken. */
    if (done) {
        if (core_add_early(self, pos) < 0) {
            goto fail;
        }
    }
    else if (direct) {
        /* Its wrapper's finish frees the slot and reports the outcome. */
        if (fw_graph_add(st, fut, self->graph_waiter) < 0) {
            goto fail;
        }
        self->ext->nrunning++;
    }
    else if (fw_graph_add(st, fut, self->graph_waiter) < 0 ||
             fw_add_done_callback(st, fut, (PyObject *)self) < 0 ||
             ext_take_slot(self, fut, pos) < 0) {
        goto fail;
    }
    return fut;
fail:
    Py_DECREF(fut);
    return NULL;
}

/* Start the slot-taking child `arg` at `pos`: a new reference to its
 * future, Py_None when it finished in an eager first step (its outcome
 * recorded), or NULL with an error. */
static PyObject *
ext_start(GatherCore *self, PyObject *arg, Py_ssize_t pos)
{
    GatherExt *ext = self->ext;
#ifdef FW_HAVE_EAGER_START
    fw_state *st = self->st;
    if (ext->eager) {
        int iscoro = ext_iscoroutine(st, arg);
        if (iscoro < 0) {
            return NULL;
        }
        if (iscoro) {
            PyObject *value = NULL, *exc = NULL, *task = NULL;
            unsigned char *flags = ext_flags(self);
            if (flags == NULL) {
                return NULL;
            }
            /* Without limit the wrapper reports the completion (no
             * done-callback, as in wrapped mode); with limit gather's
             * done-callback on the Task does (a completion starts the next
             * child from there), the wrapper has no owner. */
            int wrap = ext->eager_wrapped;
            int lw = ext->limit_wrapped;
            int r = fw_eager_start(
                st, self->loop, arg, ext->context,
                wrap || lw ? (PyObject *)self : NULL, pos,
                wrap ? core_wrapped_finished
                : lw ? ext_limit_finished
                     : ext_eager_finished,
                &value, &exc, &task);
            if (r < 0) {
                return NULL;
            }
            if (r == 0) {
                if (value != NULL) {
                    Py_XSETREF(self->values[pos], value);
                }
                else if (ext_array(self, &ext->excs) == NULL) {
                    Py_DECREF(exc);
                    return NULL;
                }
                else {
                    Py_XSETREF(ext->excs[pos], exc);
                }
                flags[pos] |= F_DIRECT;
                if (self->constructing && core_add_early(self, pos) < 0) {
                    return NULL;
                }
                return Py_NewRef(Py_None);
            }
            if (PyObject_SetAttr(task, st->str_log_destroy_pending,
                                 Py_False) < 0 ||
                fw_graph_add(st, task, self->graph_waiter) < 0 ||
                (!wrap &&
                 fw_add_done_callback(st, task, (PyObject *)self) < 0) ||
                (ext->slots != NULL && ext_take_slot(self, task, pos) < 0)) {
                Py_DECREF(task);
                return NULL;
            }
            return task;
        }
    }
#endif
    if (ext->limit_wrapped && PyCoro_CheckExact(arg)) {
        return ext_start_wrapped(self, arg, pos);
    }
    Py_ssize_t nearly = self->nearly;
    PyObject *fut = core_make_child(self, arg, pos);
    if (fut != NULL && ext->slots != NULL && self->nearly == nearly &&
        ext_take_slot(self, fut, pos) < 0) {
        Py_CLEAR(fut);
    }
    return fut;
}

/* The child of argument `pos` at the call: as core_make_child, but a
 * slot-taking child beyond the limit is only checked and kept. */
static PyObject *
ext_make_child(GatherCore *self, PyObject *arg, Py_ssize_t pos)
{
    fw_state *st = self->st;
    GatherExt *ext = self->ext;
    if (ext->limit == 0 && !ext->eager) {
        return core_make_child(self, arg, pos);
    }
    int isfut = fw_isfuture(st, arg);
    if (isfut != 0) {
        return isfut < 0 ? NULL : core_make_child(self, arg, pos);
    }
    if (ext->limit > 0 && ext->nrunning >= ext->limit) {
        /* Beyond the limit: rejected now if ensure_future would reject
         * it, started later. */
        int ok = ext_iscoroutine(st, arg);
        if (ok == 0) {
            PyObject *r = PyObject_CallOneArg(st->isawaitable, arg);
            ok = r == NULL ? -1 : PyObject_IsTrue(r);
            Py_XDECREF(r);
        }
        if (ok <= 0) {
            if (ok == 0) {
                PyErr_SetString(PyExc_TypeError, not_awaitable_msg);
            }
            return NULL;
        }
        if (ext_array(self, &ext->pending) == NULL) {
            return NULL;
        }
        if (ext->npending++ == 0) {
            ext->next = pos;
        }
        ext->pending[pos] = Py_NewRef(arg);
        return Py_NewRef(Py_None);
    }
    return ext_start(self, arg, pos);
}

/* The outer is done: its deadline goes, never-started children are
 * closed, and the core is released once nothing will call it again. */
static int
ext_outer_done(GatherCore *self)
{
    GatherExt *ext = self->ext;
    int r = 0;
    if (ext->deadline != NULL) {
        PyObject *d = ext->deadline;
        ext->deadline = NULL;
        r = fw_deadline_cancel(self->st, d);
        Py_DECREF(d);
    }
    if (ext_close_pending(self) < 0) {
        r = -1;
    }
    if (self->children != NULL && !self->aborted && !self->constructing &&
        self->nfinished == self->nfuts) {
        core_release(self);
    }
    return r;
}

/* Slots are free: start the next never-started children in argument
 * order (from a child's completion; children done at once -- an eager
 * first step, an eager task factory -- free their slot at once). */
static int
ext_start_more(GatherCore *self)
{
    fw_state *st = self->st;
    GatherExt *ext = self->ext;
    while (self->outer != NULL && ext->npending > 0 &&
           ext->nrunning < ext->limit) {
        Py_ssize_t pos = ext->next;
        while (ext->pending[pos] == NULL) {
            pos++;
        }
        ext->next = pos + 1;
        PyObject *arg = ext->pending[pos];
        ext->pending[pos] = NULL;
        ext->npending--;
        Py_ssize_t nearly = self->nearly;
        PyObject *fut = ext_start(self, arg, pos);
        Py_DECREF(arg);
        if (fut == NULL) {
            /* Starting it failed (e.g. the task factory raised): that is
             * the child's outcome.  KeyboardInterrupt and the like go out
             * to the loop. */
            unsigned char *flags = ext_flags(self);
            if (!PyErr_ExceptionMatches(PyExc_Exception) || flags == NULL ||
                ext_array(self, &ext->excs) == NULL) {
                return -1;
            }
            Py_XSETREF(ext->excs[pos], fw_err_fetch());
            flags[pos] |= F_DIRECT;
            fut = Py_NewRef(Py_None);
        }
        if (self->children == NULL) {
            Py_DECREF(fut);
            break;
        }
        Py_INCREF(fut);
        if (PyList_SetItem(self->children, pos, fut) < 0) {
            Py_DECREF(fut);
            return -1;
        }
        int r = 0;
        if (fut == Py_None) {
            int is_last = ++self->nfinished == self->nfuts;
            r = ext_direct_done(self, pos, is_last);
        }
        else if (self->nearly > nearly) {
            /* Done inside create_task (eager task factory). */
            self->nearly = nearly;
            int is_last = ++self->nfinished == self->nfuts;
            r = core_child_done(self, fut, pos, is_last);
        }
        Py_DECREF(fut);
        if (r < 0) {
            return -1;
        }
        PyObject *outer = self->outer;
        if (outer == NULL) {
            break;
        }
        int done = fw_fut_bool(st, outer, FW_DONE);
        if (done != 0) {
            return done < 0 ? -1 : ext_outer_done(self);
        }
    }
    return 0;
}

/* limit=, a wrapped child's coroutine finished (inside its Task's last
 * step): its slot is free, and the next children start now, in this loop
 * iteration.  Its outcome is processed by its Task's done-callback.  A
 * child finishing inside create_task (eager task factory) is not in the
 * children list yet: its starter sees its Task done and takes no slot. */
static int
ext_limit_finished(PyObject *owner, Py_ssize_t pos, PyObject *value,
                   PyObject *exc)
{
    GatherCore *self = Core_CAST(owner);
    GatherExt *ext = self->ext;
    if (ext == NULL || ext->slots == NULL || self->children == NULL) {
        return 0;
    }
    PyObject *fut = PyList_GET_ITEM(self->children, pos);
    if (fut == NULL || fut == Py_None) {
        return 0;
    }
    int in = PyDict_Contains(ext->slots, fut);
    if (in <= 0) {
        return in;
    }
    unsigned char *flags = ext_flags(self);
    if (flags == NULL) {
        return -1;
    }
    if (flags[pos] & F_FREED) {
        return 0;
    }
    flags[pos] |= F_FREED;
    ext->nrunning--;
    if (self->outer == NULL || self->constructing || ext->timed_out ||
        ext->npending == 0 || (exc != NULL && !self->return_exceptions)) {
        /* A failure with return_exceptions=False: its done-callback ends
         * the outer (and closes the children never started) before any
         * other child starts. */
        return 0;
    }
    Py_INCREF(owner);
    PyObject *outer = Py_NewRef(self->outer);
    int r = fw_fut_bool(self->st, outer, FW_DONE);
    if (r == 0) {
        r = ext_start_more(self);
    }
    else if (r > 0) {
        r = 0;
    }
    Py_DECREF(outer);
    Py_DECREF(owner);
    return r;
}

/* limit_direct: a child's coroutine finished, inside its Task's last step.
 * As in ext_limit_finished its slot is free and the next children start
 * now; then its completion is counted here, as wrapped mode counts it
 * (core_wrapped_finished), and only a completion that decides something
 * gets a loop callback, at the place of the stdlib's done-callback: the
 * last one, a failure (its exception is retrieved, its Task let go there),
 * a Task ending cancelled with return_exceptions=False.  A success is
 * recorded at once and its Task let go (as ext_forget_child does): no
 * done-callback and no loop Handle for it.  Children that started
 * before this one finished (an eager task factory) were counted first, as
 * their done-callbacks would have run first. */
static int
ext_limit_direct_finished(PyObject *owner, Py_ssize_t pos, PyObject *value,
                          PyObject *exc)
{
    GatherCore *self = Core_CAST(owner);
    fw_state *st = self->st;
    GatherExt *ext = self->ext;
    if (ext == NULL || self->children == NULL) {
        return 0;
    }
    PyObject *task = PyList_GET_ITEM(self->children, pos);
    if (task == NULL || task == Py_None) {
        /* Finished inside create_task (eager task factory): its starter
         * sees its Task done, takes no slot and processes it. */
        return 0;
    }
    Py_INCREF(owner);
    Py_INCREF(task);
    PyObject *error = NULL;
    int r = 0;
    ext->nrunning--;
    if (self->outer != NULL && !ext->timed_out && ext->npending > 0 &&
        (exc == NULL || self->return_exceptions)) {
        /* (A failure with return_exceptions=False: its callback ends the
         * outer and closes the children never started.) */
        PyObject *outer = Py_NewRef(self->outer);
        r = fw_fut_bool(st, outer, FW_DONE);
        r = r == 0 ? ext_start_more(self) : r < 0 ? -1 : 0;
        Py_DECREF(outer);
        if (r < 0) {
            /* Reported after the child is processed. */
            error = fw_err_fetch();
            r = 0;
        }
    }
    if (self->children == NULL) {
        goto done;
    }
    int is_last = 0;
    int deciding = 1;
    if (!self->aborted) {
        is_last = ++self->nfinished == self->nfuts;
    }
    if (value != NULL && self->aborted) {
        deciding = 0; /* nothing to retrieve */
    }
    else if (value != NULL) {
        /* A task cancelled during its last step (even from the children
         * started just now) is cancelled although its coroutine returned
         * (Task.__step: _must_cancel). */
        PyObject *must = PyObject_GetAttr(task, st->str_must_cancel);
        int must_cancel = 1;
        if (must == NULL) {
            PyErr_Clear();
        }
        else {
            must_cancel = must != Py_False;
            Py_DECREF(must);
        }
        if (!must_cancel) {
            Py_XSETREF(self->values[pos], Py_NewRef(value));
            if (!ext->timed_out && self->outer != NULL) {
                unsigned char *flags = ext_flags(self);
                if (flags == NULL) {
                    r = -1;
                    goto done;
                }
                flags[pos] |= F_DIRECT;
                if (PyList_SetItem(self->children, pos,
                                   Py_NewRef(Py_None)) < 0) {
                    r = -1;
                    goto done;
                }
            }
        }
        deciding = is_last || (must_cancel && !self->return_exceptions);
    }
    if (ext->timed_out && !self->aborted) {
        /* After the deadline only the last completion matters (as in
         * wrapped mode): the others' exceptions are retrieved when the
         * outer ends (ext_finish_timed_out). */
        deciding = is_last;
    }
    if (deciding) {
        PyObject *p = PyLong_FromSsize_t(pos);
        if (p == NULL) {
            r = -1;
            goto done;
        }
        PyObject *args[3] = {task, is_last ? Py_True : Py_False, p};
        r = fw_call_soon(st, self->loop, owner, args, 3);
        Py_DECREF(p);
    }
    else if (self->graph_waiter != NULL) {
        /* 3.14+: the stdlib's done-callback would remove the child's
         * call-graph edge in the next iteration (core_wrapped_finished). */
        PyObject *args[2] = {task, self->graph_waiter};
        r = fw_call_soon(st, self->loop, st->awaited_by_discard, args, 2);
    }
done:
    if (error != NULL) {
        if (r < 0) {
            PyErr_WriteUnraisable(owner);
        }
        fw_err_restore(error);
        r = -1;
    }
    Py_DECREF(task);
    Py_DECREF(owner);
    return r;
}

/* After a child was processed: end what the outer's end ends, or start
 * the next children. */
static int
ext_after(GatherCore *self)
{
    PyObject *outer = self->outer;
    if (outer == NULL || self->constructing) {
        return 0;
    }
    Py_INCREF(outer);
    int r = fw_fut_bool(self->st, outer, FW_DONE);
    if (r > 0) {
        r = ext_outer_done(self);
    }
    else if (r == 0 && self->ext->limit > 0 && self->ext->npending > 0 &&
             !self->ext->timed_out) {
        r = ext_start_more(self);
    }
    Py_DECREF(outer);
    return r;
}

/* limit=: a finished child's Task is let go at once (its result or
 * exception is kept as an F_DIRECT outcome), so that a long gather does not
 * hold every finished Task until the end.  Cancelled children, and any
 * child once the deadline fired, keep their future (their place in the
 * results depends on it). */
static int
ext_forget_child(GatherCore *self, PyObject *fut, Py_ssize_t pos)
{
    fw_state *st = self->st;
    GatherExt *ext = self->ext;
    if (self->outer == NULL || self->children == NULL || ext->timed_out ||
        pos < 0 || pos >= self->nargs ||
        PyList_GET_ITEM(self->children, pos) != fut) {
        return 0;
    }
    int cancelled = fw_fut_bool(st, fut, FW_CANCELLED);
    if (cancelled != 0) {
        return cancelled < 0 ? -1 : 0;
    }
    unsigned char *flags = ext_flags(self);
    if (flags == NULL) {
        return -1;
    }
    PyObject *exc = fw_fut_call(st, fut, FW_EXCEPTION);
    if (exc == NULL) {
        return -1;
    }
    if (exc != Py_None) {
        if (ext_array(self, &ext->excs) == NULL) {
            Py_DECREF(exc);
            return -1;
        }
        Py_XSETREF(ext->excs[pos], exc);
    }
    else {
        Py_DECREF(exc);
        PyObject *value = fw_fut_call(st, fut, FW_RESULT);
        if (value == NULL) {
            return -1;
        }
        Py_XSETREF(self->values[pos], value);
    }
    flags[pos] |= F_DIRECT;
    return PyList_SetItem(self->children, pos, Py_NewRef(Py_None));
}

/* Callback mode: `fut` finished and was processed. */
static int
ext_child_finished(GatherCore *self, PyObject *fut)
{
    PyObject *slots = self->ext->slots;
    if (slots != NULL) {
        PyObject *p = PyDict_GetItemWithError(slots, fut);
        if (p == NULL && PyErr_Occurred()) {
            return -1;
        }
        if (p != NULL) {
            Py_ssize_t pos = PyLong_AsSsize_t(p);
            unsigned char *flags = self->ext->flags;
            if (flags == NULL || !(flags[pos] & F_FREED)) {
                self->ext->nrunning--;
            }
            if (PyDict_DelItem(slots, fut) < 0 ||
                ext_forget_child(self, fut, pos) < 0) {
                return -1;
            }
        }
    }
    return ext_after(self);
}

/* The deadline passed. */
static int
ext_deadline_fire(PyObject *owner)
{
    GatherCore *self = Core_CAST(owner);
    fw_state *st = self->st;
    GatherExt *ext = self->ext;
    if (ext == NULL) {
        return 0;
    }
    Py_CLEAR(ext->deadline); /* it fired */
    PyObject *outer = self->outer;
    if (outer == NULL || self->constructing) {
        return 0;
    }
    Py_INCREF(outer);
    PyObject *children = Py_NewRef(self->children);
    int r = fw_fut_bool(st, outer, FW_DONE);
    if (r != 0) {
        r = r < 0 ? -1 : 0;
        goto done;
    }
    unsigned char *flags = ext_flags(self);
    if (flags == NULL) {
        r = -1;
        goto done;
    }
    /* Every unfinished child is cancelled: cancel() answers True exactly
     * for those (a child already done says False and keeps its outcome). */
    Py_ssize_t n = PyList_GET_SIZE(children);
    int any = ext->npending > 0;
    ext->timed_out = 1;
    for (Py_ssize_t i = 0; i < n && r == 0; i++) {
        PyObject *fut = PyList_GET_ITEM(children, i);
        if (fut == Py_None || ext_first(self, i) != i) {
            continue;
        }
        Py_INCREF(fut);
        PyObject *res = PyObject_CallMethodNoArgs(fut, st->str_cancel);
        Py_DECREF(fut);
        int t = res == NULL ? -1 : PyObject_IsTrue(res);
        Py_XDECREF(res);
        if (t < 0) {
            r = -1;
        }
        else if (t) {
            flags[i] |= F_CUT;
            any = 1;
        }
    }
    if (r == 0 && !any) {
        /* Every child finished already (their callbacks are on their
         * way): none is cut short, the outer ends as it would have. */
        ext->timed_out = 0;
        goto done;
    }
    if (ext_close_pending(self) < 0) {
        r = -1;
    }
    if (r == 0 && self->outer != NULL && self->nfinished == self->nfuts) {
        /* Nothing started is left to wait for. */
        r = ext_finish_timed_out(self, outer);
        core_release(self);
    }
done:
    Py_DECREF(children);
    Py_DECREF(outer);
    return r;
}

/* _GatheringFuture.cancel() of a gather(limit=, timeout=, eager=). */
static PyObject *
ext_cancel(fw_state *st, PyObject *outer, PyObject *msg)
{
    int done = fw_fut_bool(st, outer, FW_DONE);
    if (done != 0) {
        return done < 0 ? NULL : Py_NewRef(Py_False);
    }
    GatherCore *core = (GatherCore *)Py_NewRef(GF(outer)->core);
    PyObject *children = Py_XNewRef(GF(outer)->children);
    PyObject *result = NULL;
    int ret = 0;
    for (Py_ssize_t i = 0; children != NULL && i < PyList_GET_SIZE(children);
         i++) {
        PyObject *fut = PyList_GET_ITEM(children, i);
        if (fut == Py_None) {
            continue;
        }
        PyObject *stack[2] = {fut, msg};
        Py_INCREF(fut);
        PyObject *r = PyObject_VectorcallMethod(
            st->str_cancel, stack, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
            st->kw_msg);
        Py_DECREF(fut);
        int t = r == NULL ? -1 : PyObject_IsTrue(r);
        Py_XDECREF(r);
        if (t < 0) {
            goto done;
        }
        ret |= t;
    }
    Py_ssize_t closed = core->ext != NULL ? ext_close_pending(core) : 0;
    if (closed < 0) {
        goto done;
    }
    if (ret) {
        GF(outer)->cancel_requested = 1;
        result = Py_NewRef(Py_True);
    }
    else if (core->ext != NULL && core->ext->limit > 0) {
        /* No started child was unfinished: the outer is cancelled at once,
         * as a plain future. */
        PyObject *meth = PyObject_GetAttr((PyObject *)st->FutureType,
                                          st->str_cancel);
        if (meth == NULL) {
            goto done;
        }
        PyObject *args[3] = {NULL, outer, msg};
        result = PyObject_Vectorcall(meth, args + 1,
                                     1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                     st->kw_msg);
        Py_DECREF(meth);
        if (result != NULL && core->ext != NULL &&
            ext_outer_done(core) < 0) {
            Py_CLEAR(result);
        }
    }
    else {
        result = Py_NewRef(closed > 0 ? Py_True : Py_False);
    }
    if (result == Py_True && core->ext != NULL &&
        core->ext->deadline != NULL) {
        /* The outer is cancelled: cancellation wins, the deadline must
         * not act any more (docs/extras.md). */
        PyObject *d = core->ext->deadline;
        core->ext->deadline = NULL;
        int r = fw_deadline_cancel(st, d);
        Py_DECREF(d);
        if (r < 0) {
            Py_CLEAR(result);
        }
    }
done:
    Py_XDECREF(children);
    Py_DECREF(core);
    return result;
}

/* gather(*aws, return_exceptions=..., limit=, timeout=, eager=) once the
 * arguments are checked: limit 0 = none, timeout NULL = none. */
static PyObject *
gather_ext_impl(fw_state *st, PyObject *const *args, Py_ssize_t n,
                int return_exceptions, Py_ssize_t limit,
                const double *timeout, int eager)
{
#ifndef FW_HAVE_EAGER_START
    if (eager) {
        PyErr_SetString(PyExc_NotImplementedError,
                        "gather(eager=True) is not built in");
        return NULL;
    }
#endif
    if (n == 0) {
        return gather_empty(st);
    }
    /* The loop: the running one, else events.get_event_loop() (what
     * ensure_future of a coroutine uses). */
    PyObject *loop = PyObject_CallNoArgs(st->get_running_loop_or_none);
    if (loop == Py_None) {
        Py_DECREF(loop);
        loop = PyObject_CallNoArgs(st->get_event_loop);
    }
    if (loop == NULL) {
        return NULL;
    }
    PyObject *graph_waiter = NULL;
    if (st->graph_edges && fw_graph_waiter(st, loop, &graph_waiter) < 0) {
        Py_DECREF(loop);
        return NULL;
    }
    int wrapped = limit == 0 && !eager;
    for (Py_ssize_t i = 0; wrapped && i < n; i++) {
        wrapped = PyCoro_CheckExact(args[i]);
    }
    if (wrapped) {
        wrapped = fw_loop_runs_wrappers(st, loop);
        if (wrapped < 0) {
            Py_DECREF(loop);
            Py_XDECREF(graph_waiter);
            return NULL;
        }
    }
    GatherCore *core = core_new(st, n, return_exceptions, wrapped);
    if (core == NULL) {
        Py_DECREF(loop);
        Py_XDECREF(graph_waiter);
        return NULL;
    }
    core->loop = loop;
    core->graph_waiter = graph_waiter;
    ArgIndex arg_to_pos;
    arg_index_init(&arg_to_pos, args, n);
    Py_ssize_t i = -1;
    GatherExt *ext = &((GatherCoreExt *)core)->ext;
    memset(ext, 0, sizeof(*ext));
    core->ext = ext;
    ext->limit = limit;
    ext->eager = (char)eager;
    if (limit > 0) {
        int w = (ext->slots = PyDict_New()) == NULL
                    ? -1
                    : fw_loop_runs_wrappers(st, loop);
        if (w < 0) {
            goto fail;
        }
        ext->limit_wrapped = (char)w;
        /* Every child a coroutine (none with a done-callback, whose
         * completions would be counted in another order): the wrappers
         * report every completion (ext_limit_direct_finished). */
        int direct = w && !eager;
        for (Py_ssize_t j = 0; direct && j < n; j++) {
            direct = PyCoro_CheckExact(args[j]);
        }
        ext->limit_direct = (char)direct;
        if (w) {
            /* (create_task and get_task_factory not overridden) */
            PyObject *tp = (PyObject *)Py_TYPE(loop);
            PyObject *c = PyObject_GetAttr(tp, st->str_create_task);
            PyObject *g = c == NULL ? NULL
                                    : PyObject_GetAttr(
                                          tp, st->str_get_task_factory);
            Py_XDECREF(c);
            Py_XDECREF(g);
            if (g == NULL) {
                goto fail;
            }
            ext->base_loop = (char)(c == st->base_create_task &&
                                    g == st->base_get_task_factory);
        }
    }
    if (eager) {
        ext->context = PyContext_CopyCurrent();
        int w = ext->context == NULL ? -1
                : limit == 0         ? fw_loop_runs_wrappers(st, loop)
                                     : 0;
        if (w < 0) {
            goto fail;
        }
        ext->eager_wrapped = (char)w;
    }
    if (timeout != NULL && !(isinf(*timeout) && *timeout > 0)) {
        /* Taken before the first child starts. */
        double when;
        if (fw_loop_time(st, loop, &when) < 0) {
            goto fail;
        }
        double t = *timeout;
        when = isinf(t) ? when : when + t; /* -inf: expired now */
        if (!(isinf(when) && when > 0)) {
            ext->deadline = fw_deadline_new(st, loop, when, ext_deadline_fire,
                                            (PyObject *)core);
            if (ext->deadline == NULL) {
                goto fail;
            }
        }
    }
    if (core_add_children(st, core, args, n, ext_make_child, &arg_to_pos,
                          &i) < 0) {
        goto fail;
    }
    arg_index_free(&arg_to_pos);

    PyObject *outer = core_make_outer(st, core, 1);
    if (outer == NULL) {
        goto fail;
    }
    if ((core->nearly > 0 && core_process_early(core) < 0) ||
        ext_after(core) < 0) {
        Py_DECREF(outer);
        Py_DECREF(core);
        return NULL;
    }
    Py_DECREF(core);
    return outer;

fail:
    /* As gather_impl's; and the coroutines never started are closed (the
     * pending ones and the arguments after the failing one), the deadline
     * goes. */
    core->aborted = 1;
    core->constructing = 0;
    PyMem_Free(core->early);
    core->early = NULL;
    core->nearly = 0;
    core->early_head = 0;
    if (core->ext != NULL) {
        PyObject *exc = fw_err_fetch();
        if (ext->deadline != NULL) {
            PyObject *d = ext->deadline;
            ext->deadline = NULL;
            if (fw_deadline_cancel(st, d) < 0) {
                PyErr_Clear();
            }
            Py_DECREF(d);
        }
        if (ext_close_pending(core) < 0) {
            PyErr_Clear();
        }
        for (Py_ssize_t j = i + 1; i >= 0 && j < n; j++) {
            Py_ssize_t seen = arg_index_find(st, &arg_to_pos, args[j]);
            if (seen == -2) {
                PyErr_Clear();
            }
            if (seen >= 0 || ext_iscoroutine(st, args[j]) <= 0) {
                PyErr_Clear();
                continue;
            }
            PyObject *r = PyObject_CallMethodNoArgs(args[j], st->str_close);
            if (r == NULL) {
                PyErr_Clear();
            }
            Py_XDECREF(r);
        }
        fw_err_restore(exc);
    }
    arg_index_free(&arg_to_pos);
    Py_DECREF(core);
    return NULL;
}

/* A keyword name that is not one of the interned ones: -1
 * return_exceptions, 0 limit, 1 timeout, 2 eager, -2 none of them. */
static int
ext_keyword(PyObject *key)
{
    static const char *const names[] = {"limit", "timeout", "eager"};
    if (PyUnicode_CompareWithASCIIString(key, "return_exceptions") == 0) {
        return -1;
    }
    for (int k = 0; k < 3; k++) {
        if (PyUnicode_CompareWithASCIIString(key, names[k]) == 0) {
            return k;
        }
    }
    return -2;
}

/* Check limit, timeout, eager (in that order, docs/extras.md) and run. */
static PyObject *
gather_ext(fw_state *st, PyObject *const *args, Py_ssize_t nargs,
           int return_exceptions, PyObject *const *kw)
{
    Py_ssize_t limit = 0;
    PyObject *o = kw[0];
    if (o != NULL && o != Py_None) {
        if (!PyLong_Check(o) || PyBool_Check(o)) {
            fw_type_error_naming_type("limit must be an int or None, not %U",
                                      o);
            return NULL;
        }
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (v == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow < 0 || (overflow == 0 && v < 1)) {
            PyErr_Format(PyExc_ValueError, "limit must be >= 1, got %S", o);
            return NULL;
        }
        limit = overflow > 0 || v > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX
                                                   : (Py_ssize_t)v;
    }
    double timeout;
    int has_timeout = fw_timeout_arg(kw[1] == NULL ? Py_None : kw[1],
                                     &timeout);
    if (has_timeout < 0) {
        return NULL;
    }
    int eager = 0;
    o = kw[2];
    if (o != NULL) {
        if (!PyBool_Check(o)) {
            fw_type_error_naming_type("eager must be a bool, not %U", o);
            return NULL;
        }
        eager = o == Py_True;
    }
    if (limit == 0 && !has_timeout && !eager) {
        return gather_impl(st, args, nargs, return_exceptions);
    }
    return gather_ext_impl(st, args, nargs, return_exceptions, limit,
                           has_timeout ? &timeout : NULL, eager);
}

PyDoc_STRVAR(
    gather_doc,
    "gather(*coros_or_futures, return_exceptions=False, limit=None, "
    "timeout=None, eager=False)\n--\n\n"
    "Return a future aggregating results from the given coroutines/futures.\n"
    "\n"
    "A drop-in replacement for asyncio.gather() with the semantics of the\n"
    "running Python version: coroutines are wrapped in tasks (duplicates\n"
    "collapsed); the result is the list of results in argument order; the\n"
    "first exception propagates unless return_exceptions is true, in which\n"
    "case exceptions are returned in the list; cancelling the returned\n"
    "future cancels every child.\n"
    "\n"
    "Beyond asyncio (keyword-only; see docs/extras.md):\n"
    "\n"
    "limit: None, or an int >= 1: at most that many of the tasks gather\n"
    "  creates run at once; the others are started in argument order as\n"
    "  running ones finish (futures and tasks passed in take no slot).\n"
    "  Coroutines never started (the outer done early, cancelled, timed\n"
    "  out) are closed.\n"
    "timeout: None, or seconds (int or float) from now: when the deadline\n"
    "  passes, unfinished children are cancelled and awaited, and the\n"
    "  outer raises TimeoutError() (with return_exceptions, each child cut\n"
    "  short gets a TimeoutError() in the results list instead).\n"
    "eager: True runs each coroutine's first step inside the call, in a\n"
    "  copy of the caller's context; one that finishes there never becomes\n"
    "  a Task.");

static PyObject *
gather(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
       PyObject *kwnames)
{
    fw_state *st = fw_get_state(module);
    int return_exceptions = 0;
    if (kwnames != NULL) {
        PyObject *ext[3] = {NULL, NULL, NULL}; /* limit, timeout, eager */
        int has_ext = 0;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            /* -1 return_exceptions, 0 limit, 1 timeout, 2 eager */
            int k = key == st->str_return_exceptions ? -1
                    : key == st->str_limit           ? 0
                    : key == st->str_timeout         ? 1
                    : key == st->str_eager           ? 2
                                                     : ext_keyword(key);
            if (k == -2) {
                return fw_signature_error(st, "gather", NULL, args, nargs,
                                          kwnames);
            }
            if (k >= 0) {
                ext[k] = args[nargs + i];
                has_ext = 1;
                continue;
            }
            return_exceptions = PyObject_IsTrue(args[nargs + i]);
            if (return_exceptions < 0) {
                return NULL;
            }
        }
        if (has_ext) {
            return gather_ext(st, args, nargs, return_exceptions, ext);
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

/* TaskGroup
 *
 * Same observable behaviour as asyncio.TaskGroup of the running interpreter
 * (asyncio/taskgroups.py of 3.11, 3.12, 3.13.0, the later 3.13 patch
 * releases, 3.14 and 3.15; the switches are decided once, in
 * tg_decide_versions).  The stdlib keeps the children whose done-callback
 * (_on_task_done) has not run yet in a set; that set's size is what
 * __aexit__ waits on, what create_task's "is finished" check, its "is
 * shutting down" message and repr() read.  Here the children live in two
 * places:
 *
 * Wrapped children -- a native coroutine on a loop whose create_task runs
 *   our CoroutineWrapper as is (child.c): the group learns of the
 *   completion inside the child's last step, with no done-callback.  The
 *   stdlib's _on_task_done is emulated by a loop callback scheduled at that
 *   moment (so it runs in the same loop iteration, at the same place of the
 *   ready queue, as the stdlib's would).  On 3.11-3.13 that callback is
 *   scheduled only when it could change something observable:
 *     - the child failed (errors, abort, the parent's cancellation), or a
 *       failure is known and not yet processed;
 *     - the parent is not waiting in __aexit__ (its decision to wait, and
 *       create_task's "is finished" check, read the exact count);
 *     - it is the last unfinished child (the one whose callback wakes the
 *       parent; callbacks run first in, first out, so the earlier silent
 *       completions are all processed by then in the stdlib too);
 *     - the group is aborting, or may start aborting before the callback
 *       would run (the parent's wait was cancelled, a callback child is
 *       watched, a child may fail inside create_task on 3.12.1/3.13.0:
 *       tg_may_skip), so that the count in "is shutting down" is exact.
 *   Any other completion is bookkeeping only: while the parent waits, the
 *   count falls at the completion instead of one iteration later, which
 *   only repr() can see (README difference #6).
 *   3.14's _on_task_done also removes the child's call-graph edge to the
 *   parent, which anyone holding the child can see: there every
 *   completion is processed by a loop callback in the stdlib's place.
 *
 * Callback children -- anything else (custom task factory, third-party
 *   loop, other awaitables): the stdlib's algorithm, a set and one C
 *   done-callback per child.
 *
 * The eager start of 3.12+ runs a wrapped child's first step inside
 * loop.create_task; a child that finishes there is handled like the
 * stdlib's "already done" shortcut on 3.12.1 and 3.13.0 (processed at
 * once), and like any other child from 3.13.2 on (gh-128550).
 *
 * cancel() is 3.15's (gh-108951); on 3.11-3.14 it is offered with the same
 * semantics: what it changes (the place of the parent's uncancel() on
 * 3.11/3.12, gh-155433's kept cancellation, __aexit__ suppressing the
 * body's CancelledError, gh-155418) applies only to a group whose cancel()
 * requested the cancellation, so the stdlib's behaviour is untouched.
 */
#include "state.h"

#include <limits.h>
#include <string.h>

/* A wrapped child: the live Task (or one of the TG_* markers below while
 * loop.create_task runs and when the child finished inside it; NULL when
 * the slot is free), and its place in the order the group took its
 * children. */
typedef struct {
    PyObject *task;
    Py_ssize_t seq;
} tg_slot;

typedef struct {
    PyObject_HEAD
    PyObject *dict;
    PyObject *weakreflist;
    fw_state *st;
    PyObject *loop;
    PyObject *parent_task; /* strong; after an __aexit__ that raised (or
                              got an exception), a weak reference in
                              parent_weak instead */
    PyObject *parent_weak;
    PyObject *tasks;  /* callback children not yet processed (a dict: task
                         -> its place in the order the group took its
                         children), or NULL when empty and never used */
    tg_slot *slots;   /* wrapped children */
    int *free_slots;
    int nslots, slots_cap, nfree;
    int nlive;             /* wrapped children stored and not finished */
    int nscheduled;        /* wrapped completions whose processing is
                              scheduled and has not run */
    int nfailing;          /* of those, the failed ones */
    Py_ssize_t next_seq;   /* the next child's place in the group's order */
    PyObject *errors;      /* list, NULL = [] not created yet */
    PyObject *base_error;
    PyObject *on_completed_fut;
    PyObject *callback;    /* TaskGroupCallback, while children may call */
    PyObject *exit_propagate; /* __aexit__'s propagate_cancellation_error */
    PyObject *exit_pending;   /* 3.15: pending_cancellation_error */
    char exit_waiting;     /* __aexit__ awaits on_completed_fut */
    char loop_kind;        /* 0 not decided, -1 unknown loop type, 1
                              asyncio's loop (factory in _task_factory), 2
                              known loop (ask get_task_factory()) */
    char errors_none;      /* the stdlib's `self._errors = None` happened */
    char entered;
    char exiting;
    char aborting;
    char parent_cancel_requested;
    unsigned char flags;   /* TG_F_*: the rarely used states below */
    char stdlib_mode;      /* see "Stdlib mode" below */
    PyObject *pytasks;     /* stdlib mode: the set `_tasks` (the callback
                              children), NULL otherwise */
    PyObject *sched;       /* the tasks of the nscheduled completions (a
                              list in the order they were scheduled, None
                              where processed; NULL when never used), for
                              a switch to stdlib mode */
    Py_ssize_t sched_head; /* sched[:sched_head] are all processed */
    int nmoved;            /* stdlib mode: of the nscheduled, those put in
                              the set by the switch */
    /* TaskGroup(limit=N), see "Limited groups" below.  `limit` is the one
     * field the unlimited group's create_task tests. */
    Py_ssize_t limit;      /* N (clamped to PY_SSIZE_T_MAX), 0 unlimited */
    PyObject *limit_obj;   /* the int N as given, NULL unlimited */
    Py_ssize_t nholding;   /* children holding a slot */
    PyObject *slot_queue;  /* list: the slot wrappers waiting for a slot,
                              first in, first out from slot_head; NULL when
                              never used */
    Py_ssize_t slot_head;
} TaskGroupObject;

#define TG_F_EXIT_CONSUMING 0x01 /* 3.11/3.12, cancel(): __aexit__ takes the
                                    parent's pending cancellation */
#define TG_F_EXIT_UNCANCELLED 0x02 /* __aexit__ made its uncancel() */
#define TG_F_CANCEL_ON_ENTER 0x04  /* cancel() before __aenter__ */
#define TG_F_CANCEL_CALLED 0x08    /* cancel() started the abort */
#define TG_F_OWN_CANCEL 0x10       /* ... and requested the parent's
                                      cancellation */
#define TG_F_MAY_START_EAGERLY 0x20 /* a child was created under a task
                                       factory */
#define TG_HAS(self, f) (((self)->flags & (f)) != 0)
#define TG_SET(self, f) ((self)->flags |= (unsigned char)(f))
#define TG_UNSET(self, f) ((self)->flags &= (unsigned char)~(f))

/* Slot markers of a wrapped child inside loop.create_task. */
#define TG_CREATING Py_None   /* its first step has not finished it */
#define TG_DONE_OK Py_False   /* it finished there, not failing */
#define TG_DONE_FAILED Py_True /* it finished there with an exception */
#define TG_IS_TASK(t) ((t) != NULL && (t) != Py_None && (t) != Py_False && \
                       (t) != Py_True)

/* How a child's _on_task_done is run (tg_on_task_done's `kind`). */
enum {
    TG_IN_SET,      /* a callback child: its done-callback */
    TG_WRAPPED_OK,  /* a wrapped child that did not fail, scheduled */
    TG_WRAPPED_FAILED, /* a wrapped child that failed, scheduled */
    TG_AT_ONCE,     /* 3.12.1/3.13.0: done inside create_task, not kept */
};

#define TG_CAST(op) ((TaskGroupObject *)(op))

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *group;
} TGCallback;


static Py_ssize_t
tg_ntasks(TaskGroupObject *self)
{
    return self->nlive + self->nscheduled - self->nmoved +
           (self->tasks != NULL ? PyDict_GET_SIZE(self->tasks) : 0) +
           (self->pytasks != NULL ? PySet_GET_SIZE(self->pytasks) : 0);
}

static Py_ssize_t
tg_nerrors(TaskGroupObject *self)
{
    return self->errors != NULL ? PyList_GET_SIZE(self->errors) : 0;
}

/* ------------------------------------------------------------------ */
/* repr and the RuntimeErrors that quote it */

static PyObject *
tg_repr(PyObject *op)
{
    TaskGroupObject *self = TG_CAST(op);
    char buf[128];
    size_t n = 0;
    Py_ssize_t ntasks = tg_ntasks(self);
    Py_ssize_t nerrors = tg_nerrors(self);
    n += (size_t)PyOS_snprintf(buf + n, sizeof(buf) - n, "<TaskGroup");
    if (ntasks) {
        n += (size_t)PyOS_snprintf(buf + n, sizeof(buf) - n, " tasks=%zd",
                                   ntasks);
    }
    if (nerrors) {
        n += (size_t)PyOS_snprintf(buf + n, sizeof(buf) - n, " errors=%zd",
                                   nerrors);
    }
    if (self->aborting) {
        n += (size_t)PyOS_snprintf(buf + n, sizeof(buf) - n, " cancelling");
    }
    else if (self->entered) {
        n += (size_t)PyOS_snprintf(buf + n, sizeof(buf) - n, " entered");
    }
    PyOS_snprintf(buf + n, sizeof(buf) - n, ">");
    return PyUnicode_FromString(buf);
}

/* RuntimeError(f"TaskGroup {self!r} <what>"); always NULL. */
static PyObject *
tg_runtime_error(PyObject *self, const char *what)
{
    PyObject *r = PyObject_Repr(self);
    if (r != NULL) {
        PyErr_Format(PyExc_RuntimeError, "TaskGroup %U %s", r, what);
        Py_DECREF(r);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* _abort() and _on_task_done() */

/* self._parent_task: a new reference, or NULL (None) without an error. */
static PyObject *
tg_parent(TaskGroupObject *self)
{
    if (self->parent_task != NULL) {
        return Py_NewRef(self->parent_task);
    }
    if (self->parent_weak != NULL) {
        PyObject *p = PyObject_CallNoArgs(self->parent_weak);
        if (p == Py_None) {
            Py_DECREF(p);
            return NULL;
        }
        if (p == NULL) {
            PyErr_Clear();
        }
        return p;
    }
    return NULL;
}

static int
is_base_error(PyObject *exc)
{
    return PyErr_GivenExceptionMatches(exc, PyExc_SystemExit) ||
           PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt);
}

/* ------------------------------------------------------------------ */
/* Stdlib mode
 *
 * Code written against asyncio.TaskGroup uses some of its private names
 * (README: "Private attributes provided for compatibility").  The scalars
 * (_entered, _exiting, _aborting, _parent_cancel_requested, _loop,
 * _parent_task, _base_error, _on_completed_fut) and _errors (the live
 * list) are getsets over the fields: they cost nothing, and what a
 * subclass writes there is what the group reads next.  _tasks (a live,
 * mutable set) and the hooks the stdlib calls through the instance
 * (_on_task_done, _abort, _is_base_error) need the stdlib's own algorithm,
 * so a group switches, for good, to "stdlib mode" when
 *   - its type (a subclass) defines one of the three hooks (tg_new);
 *   - its instance __dict__ holds one of them (looked for by create_task
 *     and before an abort; only when the group has a non-empty __dict__);
 *   - _tasks is read or assigned.
 * A group that does none of these keeps the wrapped children and the
 * dict of callback children described above.
 *
 * In stdlib mode every new child is a callback child kept in the set
 * `pytasks` (the object _tasks returns; assigning a set to _tasks
 * replaces it) with `self._on_task_done`, looked up at create_task as the
 * stdlib does, as its done-callback (added with the caller's context);
 * _abort() and _is_base_error() are called through the instance where the
 * stdlib calls them, and the abort cancels in the set's order.  The
 * switch moves the callback children from the dict to the set (their C
 * done-callback, which is the base _on_task_done, stays), and the running
 * wrapped children too: each gets the C done-callback (so it runs after
 * the callbacks that others added to the task before the switch) and its
 * slot is freed, which makes its wrapper's report a no-op (no slot is
 * handed out again in this mode).  A wrapped child that has finished
 * and whose processing is scheduled (the stdlib's _on_task_done has not
 * run: the stdlib's set still holds it) is put in the set too, from
 * `sched`; its scheduled processing then discards it from the set (nmoved
 * keeps it from being counted twice meanwhile).  Only a completion left
 * unprocessed (tg_may_skip, 3.11-3.13 while the parent waits in __aexit__)
 * is missing: README difference 6.
 */
static PyObject *tg_callback(TaskGroupObject *self);
static PyObject *tg_slot_release(TaskGroupObject *self, Py_ssize_t i);

/* Does the instance __dict__ hold _on_task_done, _abort or
 * _is_base_error?  -1 error, 0/1. */
static int
tg_dict_hooks(TaskGroupObject *self)
{
    PyObject *d = self->dict;
    if (d == NULL || PyDict_GET_SIZE(d) == 0) {
        return 0;
    }
    fw_state *st = self->st;
    PyObject *names[3] = {st->str_tg_on_task_done, st->str_tg_abort,
                          st->str_tg_is_base_error};
    for (int i = 0; i < 3; i++) {
        int r = PyDict_Contains(d, names[i]);
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

/* Does the type (a subclass) define one of the hooks?  -1 error, 0/1. */
static int
tg_type_hooks(fw_state *st, PyTypeObject *type)
{
    if (type == st->TaskGroupType) {
        return 0;
    }
    PyObject *names[3] = {st->str_tg_on_task_done, st->str_tg_abort,
                          st->str_tg_is_base_error};
    for (int i = 0; i < 3; i++) {
        PyObject *a = PyObject_GetAttr((PyObject *)type, names[i]);
        if (a == NULL) {
            return -1;
        }
        PyObject *b = PyObject_GetAttr((PyObject *)st->TaskGroupType,
                                       names[i]);
        Py_DECREF(a);
        Py_XDECREF(b);
        if (b == NULL) {
            return -1;
        }
        if (a != b) {
            return 1;
        }
    }
    return 0;
}

static int
tg_to_stdlib(TaskGroupObject *self)
{
    if (self->stdlib_mode) {
        return 0;
    }
    fw_state *st = self->st;
    PyObject *set = PySet_New(NULL);
    if (set == NULL) {
        return -1;
    }
    if (self->tasks != NULL) {
        Py_ssize_t pos = 0;
        PyObject *t, *seq;
        while (PyDict_Next(self->tasks, &pos, &t, &seq)) {
            if (PySet_Add(set, t) < 0) {
                Py_DECREF(set);
                return -1;
            }
        }
    }
    int err = 0;
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        PyObject *t = self->slots[i].task;
        if (!TG_IS_TASK(t)) {
            continue;
        }
        PyObject *cb = err ? NULL : tg_callback(self);
        if (cb == NULL || PySet_Add(set, t) < 0) {
            err = 1;
            continue; /* it stays a wrapped child */
        }
        if (fw_add_done_callback(st, t, cb) < 0) {
            (void)PySet_Discard(set, t);
            err = 1;
            continue;
        }
        Py_DECREF(tg_slot_release(self, i));
        self->nlive--;
    }
    /* The finished wrapped children whose processing is scheduled. */
    if (!err && self->sched != NULL) {
        Py_ssize_t n = PyList_GET_SIZE(self->sched);
        int moved = 0;
        for (Py_ssize_t i = self->sched_head; i < n; i++) {
            PyObject *t = PyList_GET_ITEM(self->sched, i);
            if (t != Py_None && PySet_Add(set, t) < 0) {
                err = 1;
                break;
            }
            moved += t != Py_None;
        }
        if (!err) {
            Py_CLEAR(self->sched);
            self->sched_head = 0;
            self->nmoved = moved;
        }
        else {
            /* None moved. */
            for (Py_ssize_t i = self->sched_head; i < n; i++) {
                PyObject *t = PyList_GET_ITEM(self->sched, i);
                if (t != Py_None) {
                    (void)PySet_Discard(set, t);
                }
            }
        }
    }
    /* Committed even after an error: the children not moved stay wrapped
     * (tg_child_finished still handles them). */
    Py_CLEAR(self->tasks);
    self->pytasks = set;
    self->stdlib_mode = 1;
    return err ? -1 : 0;
}

/* self._abort() where the stdlib calls it: through the instance in stdlib
 * mode (or when the instance __dict__ holds a hook), else tg_abort. */
static int tg_abort(TaskGroupObject *self);

static int
tg_call_abort(TaskGroupObject *self)
{
    if (!self->stdlib_mode) {
        int h = tg_dict_hooks(self);
        if (h < 0 || (h > 0 && tg_to_stdlib(self) < 0)) {
            return -1;
        }
        if (!h) {
            return tg_abort(self);
        }
    }
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self,
                                            self->st->str_tg_abort);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* self._is_base_error(exc): -1 error, 0/1. */
static int
tg_is_base_error(TaskGroupObject *self, PyObject *exc)
{
    if (!self->stdlib_mode) {
        return is_base_error(exc);
    }
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)self,
                                            self->st->str_tg_is_base_error,
                                            exc);
    if (r == NULL) {
        return -1;
    }
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* _abort(): cancel the unfinished children.  The stdlib cancels them in
 * its set's order (hash order: arbitrary); here in the order the group
 * took them (_tasks.add), whatever their kind -- in stdlib mode in the
 * set's order, then any wrapped child left. */
static int
tg_abort(TaskGroupObject *self)
{
    fw_state *st = self->st;
    self->aborting = 1;
    /* A snapshot of (place, task): cancel() may call back into Python. */
    PyObject *todo = PyList_New(0);
    if (todo == NULL) {
        return -1;
    }
    if (self->pytasks != NULL) {
        /* Stdlib mode: the set's order, as the stdlib iterates it (the
         * list is not sorted then). */
        PyObject *it = PyObject_GetIter(self->pytasks);
        if (it == NULL) {
            goto fail;
        }
        PyObject *t;
        PyObject *minus = PyLong_FromLong(-1);
        while (minus != NULL && (t = PyIter_Next(it)) != NULL) {
            PyObject *item = PyTuple_Pack(2, minus, t);
            Py_DECREF(t);
            if (item == NULL || PyList_Append(todo, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(it);
                Py_DECREF(minus);
                goto fail;
            }
            Py_DECREF(item);
        }
        Py_XDECREF(minus);
        Py_DECREF(it);
        if (PyErr_Occurred()) {
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        PyObject *t = self->slots[i].task;
        if (!TG_IS_TASK(t)) {
            continue;
        }
        PyObject *item = Py_BuildValue("(nO)", self->slots[i].seq, t);
        if (item == NULL || PyList_Append(todo, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    if (self->tasks != NULL) {
        Py_ssize_t pos = 0;
        PyObject *t, *seq;
        while (PyDict_Next(self->tasks, &pos, &t, &seq)) {
            PyObject *item = PyTuple_Pack(2, seq, t);
            if (item == NULL || PyList_Append(todo, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
        }
    }
    /* The places are distinct (-1 only in stdlib mode, whose set comes
     * first and is not sorted): the tasks are never compared. */
    if (self->pytasks == NULL && PyList_Sort(todo) < 0) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(todo); i++) {
        PyObject *t = PyTuple_GET_ITEM(PyList_GET_ITEM(todo, i), 1);
        int done = fw_fut_bool(st, t, FW_DONE);
        if (done < 0) {
            goto fail;
        }
        if (!done) {
            PyObject *r = PyObject_CallMethodNoArgs(t, st->str_cancel);
            if (r == NULL) {
                goto fail;
            }
            Py_DECREF(r);
        }
    }
    Py_DECREF(todo);
    return 0;
fail:
    Py_DECREF(todo);
    return -1;
}

/* futures.future_add_to_awaited_by / future_discard_from_awaited_by(
 * task, self._parent_task) (3.14+), read from asyncio.futures at each call
 * as taskgroups.py reads them (fw_graph_call). */
static int
tg_graph_edge(TaskGroupObject *self, int discard, PyObject *task)
{
    PyObject *parent = tg_parent(self);
    int r = fw_graph_call(self->st, discard, task,
                          parent != NULL ? parent : Py_None);
    Py_XDECREF(parent);
    return r;
}

/* A scheduled completion of `task` is being processed: drop it from
 * `sched` (first in, first out: it is at the head, unless processed out
 * of order).  -1 error, 0 not there, 1 found. */
static int
tg_sched_forget(TaskGroupObject *self, PyObject *task)
{
    PyObject *sched = self->sched;
    if (sched == NULL) {
        return 0;
    }
    Py_ssize_t n = PyList_GET_SIZE(sched);
    Py_ssize_t i = self->sched_head;
    while (i < n && PyList_GET_ITEM(sched, i) != task) {
        i++;
    }
    if (i == n) {
        return 0;
    }
    if (PyList_SetItem(sched, i, Py_NewRef(Py_None)) < 0) {
        return -1;
    }
    while (self->sched_head < n &&
           PyList_GET_ITEM(sched, self->sched_head) == Py_None) {
        self->sched_head++;
    }
    if (self->sched_head == n) {
        self->sched_head = 0;
        if (PyList_SetSlice(sched, 0, n, NULL) < 0) {
            return -1;
        }
    }
    return 1;
}

/* The stdlib's _on_task_done(task); `kind` says how it was reached (the
 * TG_* values above). */
static int
tg_on_task_done(TaskGroupObject *self, PyObject *task, int kind)
{
    fw_state *st = self->st;
    if (kind == TG_WRAPPED_OK || kind == TG_WRAPPED_FAILED) {
        self->nscheduled--;
        if (kind == TG_WRAPPED_FAILED) {
            self->nfailing--;
        }
        int found = tg_sched_forget(self, task);
        if (found < 0) {
            return -1;
        }
        if (!found && self->nmoved > 0) {
            /* Put in the set by the switch: self._tasks.discard(task) */
            self->nmoved--;
            if (PySet_Discard(self->pytasks, task) < 0) {
                return -1;
            }
        }
    }
    else if (kind == TG_IN_SET && self->pytasks != NULL) {
        /* self._tasks.discard(task) */
        if (PySet_Discard(self->pytasks, task) < 0) {
            return -1;
        }
    }
    else if (kind == TG_IN_SET && self->tasks != NULL) {
        /* self._tasks.discard(task) */
        int in = PyDict_Contains(self->tasks, task);
        if (in < 0 || (in > 0 && PyDict_DelItem(self->tasks, task) < 0)) {
            return -1;
        }
    }
    if (st->tg_v314 &&
        tg_graph_edge(self, 1, task) < 0) {
        return -1;
    }
    if (self->on_completed_fut != NULL && tg_ntasks(self) == 0) {
        PyObject *fut = Py_NewRef(self->on_completed_fut);
        int done = fw_fut_bool(st, fut, FW_DONE);
        if (done == 0) {
            PyObject *r = PyObject_CallMethodOneArg(fut, st->str_set_result,
                                                    Py_True);
            Py_XDECREF(r);
            done = r == NULL ? -1 : 1;
        }
        Py_DECREF(fut);
        if (done < 0) {
            return -1;
        }
    }
    if (kind == TG_WRAPPED_OK) {
        /* Cancelled or returned: task.cancelled() or task.exception() is
         * None, nothing more to do. */
        return 0;
    }
    int cancelled = fw_fut_bool(st, task, FW_CANCELLED);
    if (cancelled != 0) {
        return cancelled < 0 ? -1 : 0;
    }
    PyObject *exc = fw_fut_call(st, task, FW_EXCEPTION);
    if (exc == NULL) {
        return -1;
    }
    if (exc == Py_None) {
        Py_DECREF(exc);
        return 0;
    }
    if (self->errors == NULL) {
        if (self->errors_none) {
            Py_DECREF(exc);
            PyErr_SetString(PyExc_AttributeError,
                            "'NoneType' object has no attribute 'append'");
            return -1;
        }
        if ((self->errors = PyList_New(0)) == NULL) {
            Py_DECREF(exc);
            return -1;
        }
    }
    if (PyList_Append(self->errors, exc) < 0) {
        Py_DECREF(exc);
        return -1;
    }
    int base = tg_is_base_error(self, exc);
    if (base < 0) {
        Py_DECREF(exc);
        return -1;
    }
    if (base && self->base_error == NULL) {
        self->base_error = Py_NewRef(exc);
    }
    PyObject *parent = tg_parent(self);
    if (parent == NULL) {
        /* The stdlib would fail on None.done(). */
        Py_DECREF(exc);
        PyErr_SetString(PyExc_AttributeError,
                        "'NoneType' object has no attribute 'done'");
        return -1;
    }
    int r = -1;
    int pdone = fw_fut_bool(st, parent, FW_DONE);
    if (pdone < 0) {
        goto done;
    }
    if (pdone) {
        PyObject *trepr = PyObject_Repr(task);
        PyObject *pstr = trepr ? PyObject_Str(parent) : NULL;
        PyObject *msg = pstr ? PyUnicode_FromFormat(
                                   "Task %U has errored out but its parent "
                                   "task %U is already completed",
                                   trepr, pstr)
                             : NULL;
        Py_XDECREF(trepr);
        Py_XDECREF(pstr);
        if (msg == NULL) {
            goto done;
        }
        PyObject *ctx = Py_BuildValue("{sNsOsO}", "message", msg,
                                      "exception", exc, "task", task);
        if (ctx == NULL) {
            goto done;
        }
        PyObject *res = PyObject_CallMethod(self->loop,
                                            "call_exception_handler", "O",
                                            ctx);
        Py_DECREF(ctx);
        if (res == NULL) {
            goto done;
        }
        Py_DECREF(res);
        r = 0;
        goto done;
    }
    if (!self->aborting && !self->parent_cancel_requested) {
        if (tg_call_abort(self) < 0) {
            goto done;
        }
        self->parent_cancel_requested = 1;
        PyObject *res = PyObject_CallMethodNoArgs(parent, st->str_cancel);
        if (res == NULL) {
            goto done;
        }
        Py_DECREF(res);
    }
    r = 0;
done:
    Py_DECREF(parent);
    Py_DECREF(exc);
    return r;
}

/* ------------------------------------------------------------------ */
/* The callback object: task.add_done_callback(cb) calls cb(task); a
 * wrapped child's scheduled processing is cb(task, True) (cb(task,
 * False) when it failed); cb() gives a limited group's slot back. */

static int tg_limit_release(TaskGroupObject *self);

static PyObject *
tgcb_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) || nargs > 2) {
        PyErr_SetString(PyExc_TypeError,
                        "TaskGroup callback takes 1 or 2 arguments");
        return NULL;
    }
    PyObject *group = ((TGCallback *)op)->group;
    if (group == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(group);
    int r;
    if (nargs == 0) {
        /* A limited group's slot given back (tg_limit_release_later). */
        r = tg_limit_release(TG_CAST(group));
    }
    else if (nargs == 1) {
        r = tg_on_task_done(TG_CAST(group), args[0], TG_IN_SET);
    }
    else {
        r = tg_on_task_done(TG_CAST(group), args[0],
                            args[1] == Py_True ? TG_WRAPPED_OK
                                               : TG_WRAPPED_FAILED);
    }
    Py_DECREF(group);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyGetSetDef tgcb_getset[] = {
    {"__qualname__", fw_get_closure_text, NULL, NULL, "TaskGroup._on_task_done"},
    {"__name__", fw_get_closure_text, NULL, NULL, "_on_task_done"},
    {NULL},
};

static PyMemberDef tgcb_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(TGCallback, vectorcall),
     Py_READONLY},
    {NULL},
};

static int
tgcb_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(((TGCallback *)op)->group);
    return 0;
}

static int
tgcb_clear(PyObject *op)
{
    Py_CLEAR(((TGCallback *)op)->group);
    return 0;
}

static PyType_Slot tgcb_slots[] = {
    {Py_tp_doc, (void *)"A TaskGroup's done-callback (internal)."},
    {Py_tp_traverse, tgcb_traverse},
    {Py_tp_clear, tgcb_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, tgcb_members},
    {Py_tp_getset, tgcb_getset},
    {0, NULL},
};

static PyType_Spec tgcb_spec = {
    .name = "fastwait._fastwait._TaskGroupCallback",
    .basicsize = sizeof(TGCallback),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = tgcb_slots,
};

/* The group's callback, made on first use.  Borrowed reference. */
static PyObject *
tg_callback(TaskGroupObject *self)
{
    if (self->callback == NULL) {
        TGCallback *cb = PyObject_GC_New(TGCallback,
                                         self->st->TaskGroupCallbackType);
        if (cb == NULL) {
            return NULL;
        }
        cb->vectorcall = tgcb_vectorcall;
        cb->group = Py_NewRef(self);
        PyObject_GC_Track(cb);
        self->callback = (PyObject *)cb;
    }
    return self->callback;
}

/* ------------------------------------------------------------------ */
/* Wrapped children */

static Py_ssize_t
tg_slot_reserve(TaskGroupObject *self)
{
    Py_ssize_t i;
    if (self->nfree > 0) {
        i = self->free_slots[--self->nfree];
    }
    else {
        if (self->nslots == self->slots_cap) {
            if (self->slots_cap > INT_MAX / 2) {
                PyErr_NoMemory();
                return -1;
            }
            int cap = self->slots_cap ? self->slots_cap * 2 : 8;
            tg_slot *slots = PyMem_Realloc(self->slots,
                                           (size_t)cap * sizeof(tg_slot));
            if (slots == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->slots = slots;
            int *free_slots = PyMem_Realloc(self->free_slots,
                                            (size_t)cap * sizeof(int));
            if (free_slots == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->free_slots = free_slots;
            self->slots_cap = cap;
        }
        i = self->nslots++;
    }
    self->slots[i].task = Py_NewRef(Py_None);
    return i;
}

/* Free slot i; returns the reference it held. */
static PyObject *
tg_slot_release(TaskGroupObject *self, Py_ssize_t i)
{
    PyObject *t = self->slots[i].task;
    self->slots[i].task = NULL;
    self->free_slots[self->nfree++] = (int)i;
    return t;
}

/* loop.call_soon(cb, arg0, arg1, context=<empty>): the handle (new
 * reference) or NULL. */
static PyObject *
tg_call_soon(TaskGroupObject *self, PyObject *arg0, PyObject *arg1)
{
    fw_state *st = self->st;
    PyObject *cb = tg_callback(self);
    if (cb == NULL) {
        return NULL;
    }
    PyObject *stack[5] = {self->loop, cb, arg0, arg1, st->empty_context};
    return PyObject_VectorcallMethod(st->str_call_soon, stack, 4,
                                     st->kw_context);
}

/* loop.call_soon(cb, task, not failed): the stdlib's _on_task_done(task),
 * in the iteration and at the place where it would run. */
static int
tg_schedule(TaskGroupObject *self, PyObject *task, int failed)
{
    if (self->sched == NULL && (self->sched = PyList_New(0)) == NULL) {
        return -1;
    }
    if (PyList_Append(self->sched, task) < 0) {
        return -1;
    }
    PyObject *h = tg_call_soon(self, task, failed ? Py_False : Py_True);
    if (h == NULL) {
        Py_ssize_t n = PyList_GET_SIZE(self->sched);
        (void)PyList_SetSlice(self->sched, n - 1, n, NULL);
        return -1;
    }
    Py_DECREF(h);
    self->nscheduled++;
    if (failed) {
        self->nfailing++;
    }
    return 0;
}

/* 3.11-3.13: may the completion of a wrapped child that did not fail go
 * unprocessed (no loop callback; the count falls at once)?  Only while the
 * parent waits in __aexit__, when it is not the last child, and when no
 * abort can start before the stdlib's callback would run: not aborting,
 * no failure scheduled, no callback child watched (its failure is seen by
 * its callback only), no child started by a task factory on 3.12.1/3.13.0
 * (an eagerly started child that fails inside create_task aborts the group
 * there), the parent's wait not cancelled.  (cancel(), fastwait's own on
 * these versions, can start an abort at any time.)  -1 error, 0/1. */
static int
tg_may_skip(TaskGroupObject *self)
{
    if (self->on_completed_fut == NULL || self->aborting ||
        self->stdlib_mode ||
        self->nfailing > 0 || self->nlive == 0 ||
        (self->tasks != NULL && PyDict_GET_SIZE(self->tasks) > 0) ||
        (TG_HAS(self, TG_F_MAY_START_EAGERLY) &&
         self->st->gather_done_shortcut && !self->st->tg_always_add)) {
        return 0;
    }
    /* on_completed_fut.done(), through the C function itself when it is
     * asyncio's own Future (the common case: this is the hot path of a
     * group's children). */
    PyObject *fut = self->on_completed_fut;
    fw_state *st = self->st;
    if (Py_TYPE(fut) == st->FutureType && st->tg_future_done != NULL) {
        PyObject *r = st->tg_future_done(fut, NULL);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        return r == Py_False;
    }
    int done = fw_fut_bool(st, fut, FW_DONE);
    return done < 0 ? -1 : !done;
}

static int
tg_child_finished(PyObject *owner, Py_ssize_t i, PyObject *value,
                  PyObject *exc)
{
    TaskGroupObject *self = TG_CAST(owner);
    if (i >= self->nslots) {
        return 0;
    }
    /* A Task whose coroutine raised CancelledError is cancelled, and one
     * whose coroutine returned is done or cancelled (_must_cancel): for
     * _on_task_done both are nothing but the end of a child. */
    int failed = value == NULL &&
                 !PyErr_GivenExceptionMatches(exc, self->st->CancelledError);
    PyObject *task = self->slots[i].task;
    if (task == TG_CREATING) {
        /* Inside loop.create_task (eager start): create_task sees it. */
        self->slots[i].task = Py_NewRef(failed ? TG_DONE_FAILED : TG_DONE_OK);
        Py_DECREF(task);
        return 0;
    }
    if (!TG_IS_TASK(task)) {
        return 0;
    }
    task = tg_slot_release(self, i);
    self->nlive--;
    int r;
    if (failed) {
        r = tg_schedule(self, task, 1);
    }
    else if (self->st->tg_v314) {
        /* The call-graph edge goes in the stdlib's place. */
        r = tg_schedule(self, task, 0);
    }
    else {
        r = tg_may_skip(self);
        if (r == 0) {
            r = tg_schedule(self, task, 0);
        }
        else if (r > 0) {
            r = 0;
        }
    }
    Py_DECREF(task);
    return r;
}

/* ------------------------------------------------------------------ */
/* Limited groups
 *
 * TaskGroup(limit=N) (docs/extras.md): of the group's children, at most N
 * have started their coroutine and not finished it.  Every coroutine child
 * of a limited group runs a slot wrapper (SlotWrapper, below) in place of
 * the bare coroutine, however the group otherwise watches the child: a
 * wrapped child's slot wrapper also tells the group of its completion, as
 * child.c's CoroutineWrapper does (tg_child_finished; `index` is its slot
 * in `slots`), a callback child's does not (`index` -1).
 *
 * A wrapper made while fewer than N children hold a slot takes one then
 * (TG_SW_HOLDING), so that its first step is the coroutine's (an eager
 * task factory runs it inside create_task).  Otherwise it joins the
 * group's queue (TG_SW_WAITING), and its first step yields a slot future,
 * loop.create_future() -- unless a slot was handed to it before that step.
 * When a holding wrapper's coroutine returns or raises, the wrapper gives
 * its slot back there and then, inside that step (tg_limit_release): the
 * first wrapper of the queue still waiting takes it, and its future's
 * result is set (a wrapper whose future is already done -- its task was
 * cancelled -- or that is no longer waiting is skipped).  Only the slot
 * of a coroutine that raised (not CancelledError) goes on from a loop
 * callback, after the group has seen the failure, so that the abort it
 * starts comes before any waiting task starts (tg_limit_release_later;
 * the spec is silent there: the simplest order that keeps "an error
 * aborts the group before a waiting task runs").  An exception
 * thrown into a waiting wrapper (its task cancelled by the user or by the
 * group's abort) closes the coroutine unstarted and is raised again: the
 * task ends cancelled.  A holding wrapper forwards everything to the
 * coroutine: a task cancelled before its first step throws into the
 * unstarted coroutine, which closes it, and the slot goes back.
 */

enum { TG_SW_DONE, TG_SW_WAITING, TG_SW_HOLDING };

typedef struct {
    FW_WRAPPER_HEAD
    TaskGroupObject *group; /* strong; NULL once done */
    PyObject *fut;          /* the slot future, once yielded */
    Py_ssize_t index;       /* the wrapped child's slot, -1: none */
    char state;             /* TG_SW_* */
} SlotWrapper;

#define SW_CAST(op) ((SlotWrapper *)(op))

/* Hand a free slot to `sw` if it still waits: 1 granted, 0 skipped, -1
 * error. */
static int
tg_slot_grant(TaskGroupObject *self, SlotWrapper *sw)
{
    if (sw->state != TG_SW_WAITING) {
        return 0;
    }
    if (sw->fut == NULL) {
        /* Before its first step, which then starts the coroutine. */
        sw->state = TG_SW_HOLDING;
        self->nholding++;
        return 1;
    }
    fw_state *st = self->st;
    int done = fw_fut_bool(st, sw->fut, FW_DONE);
    if (done != 0) {
        return done < 0 ? -1 : 0;
    }
    sw->state = TG_SW_HOLDING;
    self->nholding++;
    PyObject *stack[2] = {sw->fut, Py_None};
    PyObject *r = PyObject_VectorcallMethod(st->str_set_result, stack, 2,
                                            NULL);
    if (r == NULL) {
        sw->state = TG_SW_WAITING;
        self->nholding--;
        return -1;
    }
    Py_DECREF(r);
    return 1;
}

/* A holding child's coroutine finished: its slot goes to the first
 * waiting wrapper of the queue.  -1 error. */
static int
tg_limit_release(TaskGroupObject *self)
{
    self->nholding--;
    while (self->nholding < self->limit && self->slot_queue != NULL) {
        PyObject *q = self->slot_queue;
        Py_ssize_t n = PyList_GET_SIZE(q);
        if (self->slot_head >= n) {
            break;
        }
        /* Take the queue's reference. */
        PyObject *sw = PyList_GET_ITEM(q, self->slot_head);
        PyList_SET_ITEM(q, self->slot_head, Py_NewRef(Py_None));
        self->slot_head++;
        if (self->slot_head == n ||
            (self->slot_head >= 64 && self->slot_head * 2 >= n)) {
            Py_ssize_t head = self->slot_head;
            self->slot_head = 0;
            if (PyList_SetSlice(q, 0, head, NULL) < 0) {
                Py_DECREF(sw);
                return -1;
            }
        }
        int r = tg_slot_grant(self, SW_CAST(sw));
        Py_DECREF(sw);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

/* The slot of a child whose coroutine failed is given back from a loop
 * callback scheduled now: after the group has seen the failure (a
 * wrapped child's processing is scheduled before; a callback child's
 * done-callback runs in the same iteration as this one, before the
 * granted task's next step), so that the abort it starts cancels the
 * waiting tasks before any of them starts its coroutine.  The slot counts
 * as held until then (no new child takes it out of turn).  -1 error. */
static int
tg_limit_release_later(TaskGroupObject *self)
{
    fw_state *st = self->st;
    PyObject *cb = tg_callback(self);
    PyObject *h = NULL;
    if (cb != NULL) {
        PyObject *stack[3] = {self->loop, cb, st->empty_context};
        h = PyObject_VectorcallMethod(st->str_call_soon, stack, 2,
                                      st->kw_context);
    }
    if (h == NULL) {
        /* A closed loop: at once, then. */
        PyErr_Clear();
        return tg_limit_release(self);
    }
    Py_DECREF(h);
    return 0;
}

/* A new wrapper takes a free slot or joins the queue.  -1 error. */
static int
tg_slot_join(TaskGroupObject *self, SlotWrapper *sw)
{
    if (self->nholding < self->limit) {
        self->nholding++;
        sw->state = TG_SW_HOLDING;
        return 0;
    }
    if (self->slot_queue == NULL &&
        (self->slot_queue = PyList_New(0)) == NULL) {
        return -1;
    }
    if (PyList_Append(self->slot_queue, (PyObject *)sw) < 0) {
        return -1;
    }
    sw->state = TG_SW_WAITING;
    return 0;
}

static PyObject *
tg_slot_wrapper_new(TaskGroupObject *self, PyObject *coro, Py_ssize_t index)
{
    SlotWrapper *sw = PyObject_GC_New(SlotWrapper,
                                      self->st->TaskGroupSlotWrapperType);
    if (sw == NULL) {
        return NULL;
    }
    sw->coro = Py_NewRef(coro);
    sw->group = (TaskGroupObject *)Py_NewRef(self);
    sw->fut = NULL;
    sw->index = index;
    sw->state = TG_SW_DONE;
    PyObject_GC_Track(sw);
    if (tg_slot_join(self, sw) < 0) {
        Py_DECREF(sw);
        return NULL;
    }
    return (PyObject *)sw;
}

/* The wrapper is done: the coroutine returned (value), raised (value NULL,
 * the error set), or was closed.  Give the slot back if it held one, then
 * tell the group (a wrapped child), keeping the outcome intact.  Once done,
 * the group is gone: a later call only returns (fw_outcome_fn). */
static void
sw_finish(PyObject *op, PyObject *value)
{
    SlotWrapper *self = SW_CAST(op);
    TaskGroupObject *group = self->group;
    int holding = self->state == TG_SW_HOLDING;
    self->state = TG_SW_DONE;
    if (group == NULL) {
        return;
    }
    self->group = NULL; /* the reference moves to this frame */
    Py_CLEAR(self->fut);
    PyObject *exc = value == NULL ? fw_err_fetch() : NULL;
    int failed = exc != NULL &&
                 !PyErr_GivenExceptionMatches(exc, group->st->CancelledError);
    if (holding && !failed && tg_limit_release(group) < 0) {
        PyErr_WriteUnraisable((PyObject *)group);
    }
    Py_ssize_t i = self->index;
    self->index = -1;
    if (i >= 0 && tg_child_finished((PyObject *)group, i, value, exc) < 0) {
        PyErr_WriteUnraisable((PyObject *)group);
    }
    if (holding && failed && tg_limit_release_later(group) < 0) {
        PyErr_WriteUnraisable((PyObject *)group);
    }
    if (exc != NULL) {
        fw_err_restore(exc);
    }
    Py_DECREF(group);
}

/* The task could not be made: the slot (or the place in the queue) goes,
 * the group is not told and the coroutine is left alone.  The error stays
 * set. */
static void
sw_abandon(PyObject *op)
{
    PyObject *exc = fw_err_fetch();
    SW_CAST(op)->index = -1;
    sw_finish(op, Py_None);
    if (exc != NULL) {
        fw_err_restore(exc);
    }
}

/* A waiting wrapper's coroutine is closed unstarted (no "never awaited"
 * warning) and `exc` (a new reference, stolen) is raised. */
static void
sw_close_waiting(SlotWrapper *self, PyObject *exc)
{
    PyObject *r = PyObject_CallMethodNoArgs(self->coro,
                                            self->group->st->str_close);
    if (r == NULL) {
        /* An unstarted coroutine closes without running any code. */
        PyErr_WriteUnraisable(self->coro);
    }
    Py_XDECREF(r);
    fw_err_restore(exc);
    sw_finish((PyObject *)self, NULL);
}

/* A waiting wrapper's step: the slot future to wait on (new reference),
 * or NULL with an error (the coroutine is then closed). */
static PyObject *
sw_wait(SlotWrapper *self)
{
    fw_state *st = self->group->st;
    if (self->fut == NULL) {
        self->fut = PyObject_CallMethodNoArgs(self->group->loop,
                                              st->str_create_future);
    }
    else {
        /* Resumed without a slot: the future was completed from outside. */
        PyErr_SetString(PyExc_RuntimeError,
                        "TaskGroup slot future completed without a slot");
    }
    if (self->fut != NULL && !PyErr_Occurred() &&
        PyObject_SetAttr(self->fut, st->str_asyncio_future_blocking,
                         Py_True) == 0) {
        return Py_NewRef(self->fut);
    }
    sw_close_waiting(self, fw_err_fetch());
    return NULL;
}

static PySendResult
sw_am_send(PyObject *op, PyObject *arg, PyObject **presult)
{
    SlotWrapper *self = SW_CAST(op);
    if (fw_wrapper_check(op) < 0) {
        *presult = NULL;
        return PYGEN_ERROR;
    }
    if (self->state == TG_SW_WAITING) {
        *presult = sw_wait(self);
        return *presult != NULL ? PYGEN_NEXT : PYGEN_ERROR;
    }
    if (self->fut != NULL) {
        Py_CLEAR(self->fut); /* resumed: the slot is ours */
    }
    return fw_wrapper_send(op, arg, presult, sw_finish);
}

static PyObject *
sw_throw(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    SlotWrapper *self = SW_CAST(op);
    if (fw_check_throw_nargs(nargs) < 0 || fw_wrapper_check(op) < 0) {
        return NULL;
    }
    if (self->state == TG_SW_WAITING) {
        PyObject *exc = fw_make_thrown(args, nargs);
        if (exc != NULL) {
            sw_close_waiting(self, exc);
        }
        return NULL;
    }
    Py_CLEAR(self->fut);
    return fw_wrapper_throw(op, args, nargs, sw_finish);
}

static PyObject *
sw_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    SlotWrapper *self = SW_CAST(op);
    if (fw_wrapper_check(op) < 0) {
        return NULL;
    }
    /* A closed child never completes: the group is not told (as with
     * child.c's wrapper), but its slot goes back. */
    self->index = -1;
    PyObject *r = fw_wrapper_close_coro(op);
    sw_finish(op, r);
    return r;
}

static PyMethodDef sw_methods[] = {
    {"send", (PyCFunction)fw_coro_send, METH_O,
     "send(arg)\n--\n\nSend arg into the wrapped coroutine."},
    {"throw", (PyCFunction)(void (*)(void))sw_throw, METH_FASTCALL,
     "throw(typ[, val[, tb]])\n--\n\n"
     "Raise an exception in the wrapped coroutine (closed unstarted while\n"
     "it waits for a slot)."},
    {"close", sw_close, METH_NOARGS,
     "close()\n--\n\nClose the wrapped coroutine."},
    {NULL},
};

static int
sw_traverse(PyObject *op, visitproc visit, void *arg)
{
    SlotWrapper *self = SW_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->coro);
    Py_VISIT(self->group);
    Py_VISIT(self->fut);
    return 0;
}

static int
sw_clear(PyObject *op)
{
    SlotWrapper *self = SW_CAST(op);
    self->state = TG_SW_DONE; /* never handed a slot any more */
    Py_CLEAR(self->coro);
    Py_CLEAR(self->group);
    Py_CLEAR(self->fut);
    return 0;
}

PyDoc_STRVAR(sw_doc,
             "Runs a coroutine of a TaskGroup(limit=N) inside its task: waits\n"
             "for one of the group's N slots before the coroutine's first\n"
             "step, gives the slot back when it finishes.  Forwards the\n"
             "coroutine's introspection attributes; __wrapped__ is the\n"
             "coroutine.");

static PyType_Slot sw_slots[] = {
    {Py_tp_doc, (void *)sw_doc},
    {Py_tp_traverse, sw_traverse},
    {Py_tp_clear, sw_clear},
    {Py_tp_methods, sw_methods},
    {Py_am_send, sw_am_send},
    FW_WRAPPER_SLOTS,
    {0, NULL},
};

static PyType_Spec sw_spec = {
    .name = "fastwait._fastwait.TaskGroupSlotWrapper",
    .basicsize = sizeof(SlotWrapper),
    .flags = FW_CORO_TYPE_FLAGS,
    .slots = sw_slots,
};

/* The wrapper of a wrapped child: child.c's, or a slot wrapper. */
static void
tg_child_detach(fw_state *st, PyObject *child)
{
    if (Py_IS_TYPE(child, st->ChildType)) {
        fw_child_detach(child);
    }
    else {
        SW_CAST(child)->index = -1;
    }
}

/* A limited group's wrapper for a coroutine child that is not wrapped
 * (a callback child): a new reference, or NULL without an error when
 * `coro` is not a coroutine (loop.create_task then refuses it as usual),
 * or NULL with an error. */
static PyObject *
tg_limit_wrap(TaskGroupObject *self, PyObject *coro)
{
    if (!PyCoro_CheckExact(coro)) {
        PyObject *r = PyObject_CallOneArg(self->st->iscoroutine, coro);
        int c = r == NULL ? -1 : PyObject_IsTrue(r);
        Py_XDECREF(r);
        if (c <= 0) {
            return NULL;
        }
    }
    return tg_slot_wrapper_new(self, coro, -1);
}

/* ------------------------------------------------------------------ */
/* create_task */

/* 3.13 closes the coroutine before raising create_task's RuntimeError. */
static PyObject *
tg_refuse(TaskGroupObject *self, PyObject *coro, const char *what)
{
    if (self->st->tg_v313) {
        PyObject *r = PyObject_CallMethodNoArgs(coro, self->st->str_close);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    return tg_runtime_error((PyObject *)self, what);
}

/* The keyword arguments of a create_task call: name/context (3.11-3.13),
 * or all of them, passed on as they came (3.14+). */
typedef struct {
    PyObject *name, *context;
    PyObject *const *values;
    PyObject *kwnames; /* NULL: none */
} tg_kwargs;

/* Are all keywords ones that 3.14's Task() takes besides loop=? */
static int
tg_task_keywords_only(fw_state *st, PyObject *kwnames)
{
    Py_ssize_t n = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (k != st->str_name && k != st->str_context &&
            !(PyUnicode_Check(k) &&
              PyUnicode_CompareWithASCIIString(k, "eager_start") == 0)) {
            return 0;
        }
    }
    return 1;
}

/* 3.14+: asyncio's BaseEventLoop.create_task(coro, **kwargs) with no task
 * factory, in C: _check_closed(), Task(coro, loop=self, **kwargs). */
static PyObject *
tg_new_task_kwargs(TaskGroupObject *self, PyObject *coro, tg_kwargs *kw)
{
    fw_state *st = self->st;
    Py_ssize_t n = kw->kwnames == NULL ? 0 : PyTuple_GET_SIZE(kw->kwnames);
    PyObject *kwnames = st->kw_loop;
    PyObject *small[8];
    PyObject **stack = small;
    if (n > 0) {
        kwnames = PyTuple_New(n + 1);
        if (kwnames == NULL) {
            return NULL;
        }
        PyTuple_SET_ITEM(kwnames, 0,
                         Py_NewRef(PyTuple_GET_ITEM(st->kw_loop, 0)));
        for (Py_ssize_t i = 0; i < n; i++) {
            PyTuple_SET_ITEM(kwnames, i + 1,
                             Py_NewRef(PyTuple_GET_ITEM(kw->kwnames, i)));
        }
        if (n + 2 > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
            stack = PyMem_Malloc((size_t)(n + 2) * sizeof(PyObject *));
            if (stack == NULL) {
                Py_DECREF(kwnames);
                return PyErr_NoMemory();
            }
        }
    }
    stack[0] = coro;
    stack[1] = self->loop;
    for (Py_ssize_t i = 0; i < n; i++) {
        stack[i + 2] = kw->values[i];
    }
    PyObject *cls = fw_task_class(st);
    PyObject *task = cls == NULL ? NULL
                                 : PyObject_Vectorcall(cls, stack, 1, kwnames);
    Py_XDECREF(cls);
    if (stack != small) {
        PyMem_Free(stack);
    }
    if (kwnames != st->kw_loop) {
        Py_DECREF(kwnames);
    }
    return task;
}

/* The loop's _check_closed(): -1 (RuntimeError) if it is closed. */
static int
tg_check_closed(TaskGroupObject *self)
{
    PyObject *closed = PyObject_GetAttr(self->loop,
                                        self->st->str_closed_attr);
    if (closed == NULL) {
        return -1;
    }
    int c = PyObject_IsTrue(closed);
    Py_DECREF(closed);
    if (c > 0) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
    }
    return c != 0 ? -1 : 0;
}

/* loop.create_task(...) as the running version's TaskGroup calls it:
 * 3.11/3.12 create_task(coro[, context=]) then _set_task_name(task, name);
 * 3.13 create_task(coro, name=[, context=]); 3.14+ create_task(coro,
 * **kwargs).  `direct`: asyncio's own loop with no task factory, whose
 * create_task is done here. */
static PyObject *
tg_loop_create_task(TaskGroupObject *self, PyObject *coro, tg_kwargs *kw,
                    int direct)
{
    fw_state *st = self->st;
    PyObject *name = kw->name, *context = kw->context;
    if (st->tg_v314) {
        if (direct && tg_task_keywords_only(st, kw->kwnames)) {
            if (tg_check_closed(self) < 0) {
                return NULL;
            }
            return tg_new_task_kwargs(self, coro, kw);
        }
        Py_ssize_t n = kw->kwnames == NULL ? 0
                                           : PyTuple_GET_SIZE(kw->kwnames);
        PyObject *small[8];
        PyObject **stack = small;
        if (n + 2 > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
            stack = PyMem_Malloc((size_t)(n + 2) * sizeof(PyObject *));
            if (stack == NULL) {
                return PyErr_NoMemory();
            }
        }
        stack[0] = self->loop;
        stack[1] = coro;
        for (Py_ssize_t i = 0; i < n; i++) {
            stack[i + 2] = kw->values[i];
        }
        PyObject *task = PyObject_VectorcallMethod(
            st->str_create_task, stack, 2, n > 0 ? kw->kwnames : NULL);
        if (stack != small) {
            PyMem_Free(stack);
        }
        return task;
    }
    if (direct) {
        /* asyncio's BaseEventLoop.create_task with no task factory, in C:
         * _check_closed(), then Task(coro, loop=self, name=..., context=...)
         * (3.11/3.12's TaskGroup passes no name: the Task takes the next
         * "Task-N" and gets the name set afterwards, as there). */
        if (tg_check_closed(self) < 0) {
            return NULL;
        }
        PyObject *args[4] = {coro, self->loop,
                             st->tg_v313 ? name : Py_None, context};
        PyObject *cls = fw_task_class(st);
        if (cls == NULL) {
            return NULL;
        }
        PyObject *task = PyObject_Vectorcall(cls, args, 1,
                                             st->kw_loop_name_context);
        Py_DECREF(cls);
        if (task == NULL || st->tg_v313 || name == Py_None) {
            return task;
        }
        PyObject *r = PyObject_CallFunctionObjArgs(st->set_task_name, task,
                                                   name, NULL);
        if (r == NULL) {
            Py_DECREF(task);
            return NULL;
        }
        Py_DECREF(r);
        return task;
    }
    PyObject *stack[4] = {self->loop, coro};
    Py_ssize_t n = 2;
    PyObject *kwnames = NULL;
    int v313 = st->tg_v313;
    if (v313) {
        stack[n++] = name;
        kwnames = context != Py_None ? st->kw_name_context : st->kw_name;
    }
    else if (context != Py_None) {
        kwnames = st->kw_context;
    }
    if (context != Py_None) {
        stack[n++] = context;
    }
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *task = PyObject_VectorcallMethod(
        st->str_create_task, stack, (size_t)(n - nkw), kwnames);
    if (task == NULL || v313 || name == Py_None) {
        return task;
    }
    /* tasks._set_task_name(task, name) */
    PyObject *r = PyObject_CallFunctionObjArgs(st->set_task_name, task, name,
                                               NULL);
    if (r == NULL) {
        Py_DECREF(task);
        return NULL;
    }
    Py_DECREF(r);
    return task;
}

/* fw_loop_runs_wrappers() for the group's loop, which never changes: the
 * loop type is judged once; the task factory, which may change between two
 * create_task calls, is read every time (on asyncio's own loops straight
 * from `_task_factory`, which is what get_task_factory() returns there).
 * -1 error, 0 no, 1 yes, 2 yes and it is asyncio's own loop with no task
 * factory (create_task is then done here, see tg_loop_create_task). */
static int
tg_runs_wrappers(TaskGroupObject *self)
{
    fw_state *st = self->st;
    PyObject *loop = self->loop;
    if (self->loop_kind == 0) {
        int known = fw_loop_type_known(st, Py_TYPE(loop));
        if (known < 0) {
            return -1;
        }
        self->loop_kind = -1;
        if (known) {
            PyObject *c = PyObject_GetAttr((PyObject *)Py_TYPE(loop),
                                           st->str_create_task);
            PyObject *g = c == NULL ? NULL
                                    : PyObject_GetAttr(
                                          (PyObject *)Py_TYPE(loop),
                                          st->str_get_task_factory);
            Py_XDECREF(c);
            Py_XDECREF(g);
            if (g == NULL) {
                return -1;
            }
            self->loop_kind = (c == st->base_create_task &&
                               g == st->base_get_task_factory)
                                  ? 1
                                  : 2;
        }
    }
    if (self->loop_kind < 0) {
        return 0;
    }
    PyObject *factory =
        self->loop_kind == 1
            ? PyObject_GetAttr(loop, st->str_task_factory_attr)
            : PyObject_CallMethodNoArgs(loop, st->str_get_task_factory);
    if (factory == NULL) {
        return -1;
    }
    int ok = factory == Py_None
                 ? (self->loop_kind == 1 ? 2 : 1)
                 : factory == st->eager_task_factory;
    if (factory != Py_None) {
        TG_SET(self, TG_F_MAY_START_EAGERLY);
    }
    Py_DECREF(factory);
    return ok;
}

/* 3.12.1/3.13.0 (the eager shortcut): note whether the loop has a task
 * factory, which may start children eagerly (see tg_may_skip).  Wrapped
 * children are noted by tg_runs_wrappers. */
static void
tg_note_factory(TaskGroupObject *self)
{
    fw_state *st = self->st;
    if (TG_HAS(self, TG_F_MAY_START_EAGERLY) || !st->gather_done_shortcut ||
        st->tg_always_add) {
        return;
    }
    PyObject *factory = PyObject_CallMethodNoArgs(self->loop,
                                                  st->str_get_task_factory);
    if (factory == NULL) {
        PyErr_Clear();
    }
    if (factory != Py_None) {
        TG_SET(self, TG_F_MAY_START_EAGERLY);
    }
    Py_XDECREF(factory);
}

/* 3.15 (gh-155418): a task created while the group is aborting (an eager
 * child can start the abort before it joins the group) is cancelled.  On
 * 3.11-3.14 only when cancel() started the abort.  -1 error. */
static int
tg_cancel_if_aborting(TaskGroupObject *self, PyObject *task)
{
    if (!self->aborting ||
        !(self->st->tg_v315 || TG_HAS(self, TG_F_CANCEL_CALLED))) {
        return 0;
    }
    int done = fw_fut_bool(self->st, task, FW_DONE);
    if (done != 0) {
        return done < 0 ? -1 : 0;
    }
    PyObject *r = PyObject_CallMethodNoArgs(task, self->st->str_cancel);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* 3.12.1/3.13.0's `self._on_task_done(task)` for a child done inside
 * create_task (through the instance in stdlib mode). */
static int
tg_at_once(TaskGroupObject *self, PyObject *task)
{
    if (!self->stdlib_mode) {
        return tg_on_task_done(self, task, TG_AT_ONCE);
    }
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)self,
                                            self->st->str_tg_on_task_done,
                                            task);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* task.add_done_callback(cb), as Python code calls it (the current
 * context). */
static int
tg_add_py_callback(fw_state *st, PyObject *task, PyObject *cb)
{
    PyObject *r = PyObject_CallMethodOneArg(task, st->str_add_done_callback,
                                            cb);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static PyObject *
tg_create_task_impl(TaskGroupObject *self, PyObject *coro, tg_kwargs *kw)
{
    fw_state *st = self->st;
    if (!self->entered) {
        return tg_refuse(self, coro, "has not been entered");
    }
    if (self->exiting && tg_ntasks(self) == 0) {
        return tg_refuse(self, coro, "is finished");
    }
    if (self->aborting) {
        return tg_refuse(self, coro, "is shutting down");
    }
    if (!self->stdlib_mode && self->dict != NULL) {
        /* tg._on_task_done = f (or _abort, _is_base_error) */
        int h = tg_dict_hooks(self);
        if (h < 0 || (h > 0 && tg_to_stdlib(self) < 0)) {
            return NULL;
        }
    }
    int wrapped = !self->stdlib_mode && PyCoro_CheckExact(coro);
    if (wrapped) {
        wrapped = tg_runs_wrappers(self);
        if (wrapped < 0) {
            return NULL;
        }
    }
    else {
        tg_note_factory(self);
    }
    PyObject *task;
    if (wrapped) {
        Py_ssize_t i = tg_slot_reserve(self);
        if (i < 0) {
            return NULL;
        }
        PyObject *child = self->limit == 0
                              ? fw_child_new(st, coro, (PyObject *)self, i,
                                             tg_child_finished)
                              : tg_slot_wrapper_new(self, coro, i);
        if (child == NULL) {
            Py_DECREF(tg_slot_release(self, i));
            return NULL;
        }
        task = tg_loop_create_task(self, child, kw, wrapped == 2);
        if (task == NULL) {
            /* Like the stdlib: the (wrapped) coroutine is left alone. */
            if (Py_IS_TYPE(child, st->ChildType)) {
                fw_child_detach(child);
            }
            else {
                sw_abandon(child);
            }
            Py_DECREF(child);
            Py_DECREF(tg_slot_release(self, i));
            return NULL;
        }
        if (self->stdlib_mode) {
            /* Its first (eager) step switched the group to stdlib mode:
             * it becomes a callback child. */
            tg_child_detach(st, child);
            Py_DECREF(child);
            Py_DECREF(tg_slot_release(self, i));
            goto callback_child;
        }
        if (st->tg_v314 &&
            tg_graph_edge(self, 0, task) < 0) {
            /* As in the stdlib, the task is not kept by the group. */
            tg_child_detach(st, child);
            Py_DECREF(child);
            Py_DECREF(tg_slot_release(self, i));
            goto fail;
        }
        Py_DECREF(child);
        PyObject *mark = self->slots[i].task;
        if (mark == TG_CREATING) {
            Py_SETREF(self->slots[i].task, Py_NewRef(task));
            self->slots[i].seq = self->next_seq++;
            self->nlive++;
            if (self->aborting && tg_cancel_if_aborting(self, task) < 0) {
                goto fail;
            }
            return task;
        }
        /* Finished inside loop.create_task (eager start). */
        int failed = mark == TG_DONE_FAILED;
        Py_DECREF(tg_slot_release(self, i));
        if (!st->tg_always_add && st->gather_done_shortcut) {
            /* 3.12.1/3.13.0: processed at once, never kept. */
            if (tg_at_once(self, task) < 0) {
                goto fail;
            }
            return task;
        }
        /* add_done_callback on a done task schedules the callback now. */
        if (tg_schedule(self, task, failed) < 0) {
            goto fail;
        }
        return task;
    }
    PyObject *sw = NULL;
    if (self->limit != 0) {
        sw = tg_limit_wrap(self, coro);
        if (sw == NULL && PyErr_Occurred()) {
            return NULL;
        }
    }
    task = tg_loop_create_task(self, sw != NULL ? sw : coro, kw, 0);
    if (sw != NULL) {
        if (task == NULL) {
            sw_abandon(sw);
        }
        Py_DECREF(sw);
    }
    if (task == NULL) {
        return NULL;
    }
callback_child:
    if (st->tg_v314 && tg_graph_edge(self, 0, task) < 0) {
        goto fail;
    }
    if (st->gather_done_shortcut && !st->tg_always_add) {
        int done = fw_fut_bool(st, task, FW_DONE);
        if (done < 0) {
            goto fail;
        }
        if (done) {
            /* 3.12.1/3.13.0: already done, processed at once and never
             * added. */
            if (tg_at_once(self, task) < 0) {
                goto fail;
            }
            return task;
        }
    }
    if (self->stdlib_mode) {
        /* self._tasks.add(task); task.add_done_callback(
         * self._on_task_done) (3.11: the other way round) */
        PyObject *cb = PyObject_GetAttr((PyObject *)self,
                                        st->str_tg_on_task_done);
        if (cb == NULL) {
            goto fail;
        }
        int r;
        if (st->gather_done_shortcut) {
            r = PySet_Add(self->pytasks, task) < 0 ||
                tg_add_py_callback(st, task, cb) < 0;
        }
        else {
            r = tg_add_py_callback(st, task, cb) < 0 ||
                PySet_Add(self->pytasks, task) < 0;
        }
        Py_DECREF(cb);
        if (r) {
            goto fail;
        }
        if (self->aborting && tg_cancel_if_aborting(self, task) < 0) {
            goto fail;
        }
        return task;
    }
    PyObject *cb = tg_callback(self);
    if (cb == NULL) {
        goto fail;
    }
    if (self->tasks == NULL && (self->tasks = PyDict_New()) == NULL) {
        goto fail;
    }
    PyObject *seq = PyLong_FromSsize_t(self->next_seq++);
    if (seq == NULL) {
        goto fail;
    }
    /* 3.11 adds the callback first, 3.12+ the task first. */
    int r;
    if (st->gather_done_shortcut) {
        r = PyDict_SetItem(self->tasks, task, seq) < 0 ||
            fw_add_done_callback(st, task, cb) < 0;
    }
    else {
        r = fw_add_done_callback(st, task, cb) < 0 ||
            PyDict_SetItem(self->tasks, task, seq) < 0;
    }
    Py_DECREF(seq);
    if (r) {
        goto fail;
    }
    if (self->aborting && tg_cancel_if_aborting(self, task) < 0) {
        goto fail;
    }
    return task;
fail:
    Py_DECREF(task);
    return NULL;
}

PyDoc_STRVAR(tg_create_task_doc,
             "create_task($self, coro, *, name=None, context=None)\n--\n\n"
             "Create a new task in this group and return it.\n\n"
             "Similar to `asyncio.create_task`.");

PyDoc_STRVAR(tg_create_task_kw_doc,
             "create_task($self, coro, **kwargs)\n--\n\n"
             "Create a new task in this group and return it.\n\n"
             "Similar to `asyncio.create_task`.");

/* 3.14+: create_task(coro, **kwargs) bound by the signature function:
 * (coro, kwargs) -> the call with kwargs passed on. */
static PyObject *
tg_create_task_bound_kw(TaskGroupObject *self, PyObject *bound)
{
    PyObject *coro = PyTuple_GET_ITEM(bound, 0);
    PyObject *dict = PyTuple_GET_ITEM(bound, 1);
    Py_ssize_t n = PyDict_GET_SIZE(dict);
    PyObject *kwnames = PyTuple_New(n);
    PyObject **values = PyMem_Malloc((size_t)(n + 1) * sizeof(PyObject *));
    if (kwnames == NULL || values == NULL) {
        Py_XDECREF(kwnames);
        PyMem_Free(values);
        return PyErr_NoMemory();
    }
    Py_ssize_t pos = 0, i = 0;
    PyObject *k, *v;
    while (PyDict_Next(dict, &pos, &k, &v)) {
        PyTuple_SET_ITEM(kwnames, i, Py_NewRef(k));
        values[i++] = v; /* borrowed from the dict */
    }
    tg_kwargs kw = {Py_None, Py_None, values, n > 0 ? kwnames : NULL};
    PyObject *r = tg_create_task_impl(self, coro, &kw);
    PyMem_Free(values);
    Py_DECREF(kwnames);
    return r;
}

static PyObject *
tg_create_task(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    TaskGroupObject *self = TG_CAST(op);
    fw_state *st = self->st;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (st->tg_v314) {
        if (nargs == 1) {
            tg_kwargs kw = {Py_None, Py_None, args + 1,
                            nkw > 0 ? kwnames : NULL};
            return tg_create_task_impl(self, args[0], &kw);
        }
        PyObject *bound = fw_bind(st, "tg_create_task_kw", op, args, nargs,
                                  kwnames);
        if (bound == NULL) {
            return NULL;
        }
        PyObject *r = tg_create_task_bound_kw(self, bound);
        Py_DECREF(bound);
        return r;
    }
    tg_kwargs kw = {Py_None, Py_None, NULL, NULL};
    int ok = nargs == 1;
    for (Py_ssize_t i = 0; ok && i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (k == st->str_name) {
            kw.name = args[nargs + i];
        }
        else if (k == st->str_context) {
            kw.context = args[nargs + i];
        }
        else {
            ok = 0;
        }
    }
    if (ok) {
        return tg_create_task_impl(self, args[0], &kw);
    }
    PyObject *bound = fw_bind(st, "tg_create_task", op, args, nargs,
                              kwnames);
    if (bound == NULL) {
        return NULL;
    }
    kw.name = PyTuple_GET_ITEM(bound, 1);
    kw.context = PyTuple_GET_ITEM(bound, 2);
    PyObject *r = tg_create_task_impl(self, PyTuple_GET_ITEM(bound, 0), &kw);
    Py_DECREF(bound);
    return r;
}

/* ------------------------------------------------------------------ */
/* cancel() */

/* The stdlib's (3.15) TaskGroup.cancel(). */
static int
tg_cancel_impl(TaskGroupObject *self)
{
    if (!self->entered) {
        TG_SET(self, TG_F_CANCEL_ON_ENTER);
        return 0;
    }
    if (self->exiting && tg_ntasks(self) == 0) {
        return 0;
    }
    if (self->aborting) {
        return 0;
    }
    TG_SET(self, TG_F_CANCEL_CALLED);
    if (tg_call_abort(self) < 0) {
        return -1;
    }
    PyObject *parent = tg_parent(self);
    if (parent == NULL || self->parent_cancel_requested) {
        Py_XDECREF(parent);
        return PyErr_Occurred() ? -1 : 0;
    }
    self->parent_cancel_requested = 1;
    TG_SET(self, TG_F_OWN_CANCEL);
    PyObject *r = PyObject_CallMethodNoArgs(parent, self->st->str_cancel);
    Py_DECREF(parent);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

PyDoc_STRVAR(tg_cancel_doc,
             "cancel($self, /)\n--\n\n"
             "Cancel the task group.\n\n"
             "cancel() is called on every task of the group that is not done\n"
             "yet, and on the parent task (the body of the group): the group\n"
             "then exits without raising CancelledError.  Called before the\n"
             "group is entered, it cancels the group on entry; idempotent,\n"
             "and a no-op after the group has exited.  (Python 3.15's\n"
             "TaskGroup.cancel(), gh-108951, on every version.)");

static PyObject *
tg_cancel(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    TaskGroupObject *self = TG_CAST(op);
    if (nargs != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        return fw_signature_error(self->st, "tg_cancel", op, args, nargs,
                                  kwnames);
    }
    if (tg_cancel_impl(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ */
/* __aenter__ */

static PyObject *
tg_aenter_step(PyObject *state, PyObject *exc, PyObject **result)
{
    TaskGroupObject *self = TG_CAST(state);
    fw_state *st = self->st;
    if (exc != NULL) {
        fw_err_restore(exc);
        return NULL;
    }
    if (self->entered) {
        return tg_runtime_error(state, "has already been entered");
    }
    if (self->loop == NULL) {
        self->loop = PyObject_CallNoArgs(st->get_running_loop);
        if (self->loop == NULL) {
            return NULL;
        }
    }
    PyObject *parent = PyObject_CallOneArg(st->current_task, self->loop);
    if (parent == NULL) {
        return NULL;
    }
    if (parent == Py_None) {
        Py_DECREF(parent);
        Py_CLEAR(self->parent_task);
        Py_CLEAR(self->parent_weak);
        return tg_runtime_error(state, "cannot determine the parent task");
    }
    Py_XSETREF(self->parent_task, parent);
    Py_CLEAR(self->parent_weak);
    self->entered = 1;
    if (TG_HAS(self, TG_F_CANCEL_ON_ENTER)) {
        /* self.cancel(): a subclass's own, if it has one. */
        if (Py_TYPE(state) != st->TaskGroupType) {
            PyObject *r = PyObject_CallMethodNoArgs(state, st->str_cancel);
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
        }
        else if (tg_cancel_impl(self) < 0) {
            return NULL;
        }
    }
    *result = Py_NewRef(state);
    return NULL;
}

static const fw_coro_def tg_aenter_def = {"TaskGroup.__aenter__",
                                          tg_aenter_step};

static PyObject *
tg_aenter(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    fw_state *st = TG_CAST(op)->st;
    if (nargs != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        return fw_signature_error(st, "tg_aenter", op, args, nargs, kwnames);
    }
    return fw_coro_new(st, &tg_aenter_def, op);
}

/* ------------------------------------------------------------------ */
/* __aexit__ */

/* self._parent_task.<name>(): the stdlib's AttributeError when there is
 * no parent task (__aexit__ of a group that was never entered). */
static PyObject *
tg_parent_call(TaskGroupObject *self, const char *name)
{
    PyObject *parent = tg_parent(self);
    if (parent == NULL) {
        PyErr_Format(PyExc_AttributeError,
                     "'NoneType' object has no attribute '%s'", name);
        return NULL;
    }
    PyObject *r = PyObject_CallMethod(parent, name, NULL);
    Py_DECREF(parent);
    return r;
}

/* exc is CancelledError (3.11/3.12: the exact type; 3.13: a subclass). */
static int
tg_is_cancelled_type(fw_state *st, PyObject *et)
{
    if (et == Py_None) {
        return 0;
    }
    if (st->tg_v313) {
        return PyObject_IsSubclass(et, st->CancelledError);
    }
    return et == st->CancelledError;
}

/* parent.uncancel() == 0: -1 error, 0/1. */
static int
tg_uncancel_to_zero(TaskGroupObject *self)
{
    PyObject *r = tg_parent_call(self, "uncancel");
    if (r == NULL) {
        return -1;
    }
    int zero = PyLong_Check(r) && PyLong_AsLong(r) == 0;
    Py_DECREF(r);
    return zero;
}

/* 3.13+'s uncancel() after the wait (`_parent_cancel_requested` is set):
 * -1 error, 1 the count reached zero, 0 not. */
static int
tg_late_uncancel(TaskGroupObject *self)
{
    TG_SET(self, TG_F_EXIT_UNCANCELLED);
    int zero = tg_uncancel_to_zero(self);
    if (zero < 0) {
        return -1;
    }
    if (zero) {
        Py_CLEAR(self->exit_propagate);
    }
    else if ((self->st->tg_v315 || TG_HAS(self, TG_F_OWN_CANCEL)) &&
             self->exit_propagate == NULL) {
        /* gh-155433: the remaining cancellation is not the group's: it is
         * kept. */
        self->exit_propagate = Py_XNewRef(self->exit_pending);
    }
    return zero;
}

/* asyncio.sleep(0): an awaitable that yields to the loop once. */
static PyObject *
tg_sleep0(void)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return NULL;
    }
    PyObject *sleep = PyObject_GetAttrString(asyncio, "sleep");
    Py_DECREF(asyncio);
    if (sleep == NULL) {
        return NULL;
    }
    PyObject *zero = PyLong_FromLong(0);
    PyObject *aw = zero == NULL ? NULL : PyObject_CallOneArg(sleep, zero);
    Py_XDECREF(zero);
    Py_DECREF(sleep);
    return aw;
}

/* raise exc (a new reference, stolen), chained like a `raise` statement
 * inside the running coroutine. */
static PyObject *
tg_raise(PyObject *exc)
{
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

/* The group is done with its children: drop what could keep a cycle. */
static void
tg_finish(TaskGroupObject *self)
{
    Py_CLEAR(self->on_completed_fut);
    if (self->callback != NULL) {
        Py_CLEAR(((TGCallback *)self->callback)->group);
        Py_CLEAR(self->callback);
    }
}

/* __aexit__ ended (returned or raised; the error, if any, stays set). */
static void
tg_aexit_ended(TaskGroupObject *self, PyObject *exc_value, int raised)
{
    Py_CLEAR(self->exit_propagate);
    Py_CLEAR(self->exit_pending);
    if (self->st->tg_aexit_clears) {
        /* 3.12.8+/3.13.1+: __aexit__'s `finally` (gh-124958). */
        Py_CLEAR(self->parent_task);
        Py_CLEAR(self->parent_weak);
        Py_CLEAR(self->errors);
        self->errors_none = 1;
        Py_CLEAR(self->base_error);
        return;
    }
    if (raised || exc_value != Py_None) {
        /* An exception that is raised (or was handed in) keeps the
         * parent's frame alive through its traceback, and that frame
         * holds the group: a strong reference to the parent task would
         * close a cycle.  The stdlib keeps _parent_task; only a second
         * __aexit__ reads it again, while the parent runs. */
        PyObject *parent = self->parent_task;
        if (parent != NULL) {
            PyObject *exc = fw_err_fetch();
            PyObject *weak = PyWeakref_NewRef(parent, NULL);
            if (weak == NULL) {
                PyErr_Clear();
            }
            else {
                Py_XSETREF(self->parent_weak, weak);
                Py_CLEAR(self->parent_task);
            }
            if (exc != NULL) {
                fw_err_restore(exc);
            }
        }
    }
}

/* __aexit__'s coroutine state is the tuple (group, et, exc); what it
 * changes while it runs lives in the group (one __aexit__ runs at a
 * time). */
static PyObject *tg_aexit_finish(TaskGroupObject *self, PyObject *et,
                                 PyObject *exc_value, PyObject **result);

static PyObject *
tg_aexit_step(PyObject *state, PyObject *exc, PyObject **result)
{
    TaskGroupObject *self = TG_CAST(PyTuple_GET_ITEM(state, 0));
    PyObject *et = PyTuple_GET_ITEM(state, 1);
    PyObject *exc_value = PyTuple_GET_ITEM(state, 2);
    fw_state *st = self->st;

    if (TG_HAS(self, TG_F_EXIT_CONSUMING)) {
        /* Back from sleep(0): the parent's pending cancellation, which was
         * the group's own (cancel()), has been delivered here. */
        TG_UNSET(self, TG_F_EXIT_CONSUMING);
        if (exc != NULL) {
            if (!PyErr_GivenExceptionMatches(exc, st->CancelledError)) {
                fw_err_restore(exc);
                goto error;
            }
            /* A cancellation that arrived meanwhile is not the group's. */
            PyObject *r = tg_parent_call(self, "cancelling");
            int t = r == NULL ? -1 : PyObject_IsTrue(r);
            Py_XDECREF(r);
            if (t < 0) {
                Py_DECREF(exc);
                goto error;
            }
            if (t) {
                Py_XSETREF(self->exit_propagate, exc);
            }
            else {
                Py_DECREF(exc);
            }
        }
        goto finish;
    }
    if (!self->exit_waiting) {
        if (exc != NULL) {
            /* Thrown in before the first step. */
            fw_err_restore(exc);
            return NULL;
        }
        self->exiting = 1;
        TG_UNSET(self, TG_F_EXIT_UNCANCELLED);
        if (exc_value != Py_None) {
            int base = tg_is_base_error(self, exc_value);
            if (base < 0) {
                goto error;
            }
            if (base && self->base_error == NULL) {
                self->base_error = Py_NewRef(exc_value);
            }
        }
        int c = tg_is_cancelled_type(st, et);
        if (c < 0) {
            goto error;
        }
        Py_CLEAR(self->exit_propagate);
        if (c) {
            self->exit_propagate = Py_NewRef(exc_value);
        }
        Py_CLEAR(self->exit_pending);
        if (!st->tg_v313 && self->parent_cancel_requested &&
            !TG_HAS(self, TG_F_OWN_CANCEL)) {
            /* 3.11/3.12 uncancel() here (a cancellation requested by
             * cancel() is taken back where 3.13+ does it). */
            int zero = tg_uncancel_to_zero(self);
            if (zero < 0) {
                goto error;
            }
            if (zero) {
                Py_CLEAR(self->exit_propagate);
            }
        }
        if (et != Py_None && !self->aborting && tg_call_abort(self) < 0) {
            goto error;
        }
    }
    else {
        self->exit_waiting = 0;
        if (exc != NULL) {
            if (!PyErr_GivenExceptionMatches(exc, st->CancelledError)) {
                fw_err_restore(exc);
                goto error;
            }
            /* 3.15: pending_cancellation_error = ex */
            Py_XSETREF(self->exit_pending, Py_NewRef(exc));
            if (!self->aborting) {
                Py_XSETREF(self->exit_propagate, exc);
                if (tg_call_abort(self) < 0) {
                    goto error;
                }
            }
            else {
                Py_DECREF(exc);
            }
        }
        Py_CLEAR(self->on_completed_fut);
    }

    if (tg_ntasks(self) > 0) {
        if (self->on_completed_fut == NULL) {
            self->on_completed_fut = PyObject_CallMethodNoArgs(
                self->loop, st->str_create_future);
            if (self->on_completed_fut == NULL) {
                goto error;
            }
        }
        self->exit_waiting = 1;
        return Py_NewRef(self->on_completed_fut);
    }
    if (!st->tg_v313 && TG_HAS(self, TG_F_OWN_CANCEL) &&
        self->parent_cancel_requested && self->base_error == NULL) {
        /* 3.11/3.12 and cancel(): the uncancel() of 3.13+'s place.  Their
         * Task.uncancel() leaves a pending cancellation pending (3.13's
         * drops it at zero): if the body never awaited after cancel(),
         * __aexit__ takes it itself (one loop iteration) rather than let
         * it hit the parent after the group. */
        int zero = tg_late_uncancel(self);
        if (zero < 0) {
            goto error;
        }
        PyObject *parent = zero ? tg_parent(self) : NULL;
        if (parent != NULL) {
            PyObject *must = PyObject_GetAttr(parent, st->str_must_cancel);
            Py_DECREF(parent);
            int m = must == NULL ? -1 : PyObject_IsTrue(must);
            Py_XDECREF(must);
            if (m < 0) {
                goto error;
            }
            if (m) {
                PyObject *aw = tg_sleep0();
                if (aw == NULL) {
                    goto error;
                }
                TG_SET(self, TG_F_EXIT_CONSUMING);
                return aw;
            }
        }
    }
finish:
    tg_finish(self);
    PyObject *r = tg_aexit_finish(self, et, exc_value, result);
    tg_aexit_ended(self, exc_value, r == NULL && *result == NULL);
    return r;
error:
    tg_aexit_ended(self, exc_value, 1);
    return NULL;
}

static PyObject *
tg_aexit_finish(TaskGroupObject *self, PyObject *et, PyObject *exc_value,
                PyObject **result)
{
    fw_state *st = self->st;
    if (self->base_error != NULL) {
        return tg_raise(Py_NewRef(self->base_error));
    }
    if ((st->tg_v313 || TG_HAS(self, TG_F_OWN_CANCEL)) &&
        self->parent_cancel_requested &&
        !TG_HAS(self, TG_F_EXIT_UNCANCELLED) && tg_late_uncancel(self) < 0) {
        return NULL;
    }
    if (self->exit_propagate != NULL && tg_nerrors(self) == 0) {
        int t = st->tg_v313 ? 1 : PyObject_IsTrue(self->exit_propagate);
        if (t < 0) {
            return NULL;
        }
        if (t) {
            return tg_raise(Py_NewRef(self->exit_propagate));
        }
    }
    if (et != Py_None) {
        int c = tg_is_cancelled_type(st, et);
        if (c < 0) {
            return NULL;
        }
        if (!c) {
            if (self->errors == NULL && self->errors_none) {
                PyErr_SetString(PyExc_AttributeError,
                                "'NoneType' object has no attribute "
                                "'append'");
                return NULL;
            }
            if (self->errors == NULL &&
                (self->errors = PyList_New(0)) == NULL) {
                return NULL;
            }
            if (PyList_Append(self->errors, exc_value) < 0) {
                return NULL;
            }
        }
    }
    if (tg_nerrors(self) > 0) {
        if (st->tg_v313) {
            /* Keep the cancel count stable if the parent is being
             * cancelled from outside. */
            PyObject *r = tg_parent_call(self, "cancelling");
            if (r == NULL) {
                return NULL;
            }
            int t = PyObject_IsTrue(r);
            Py_DECREF(r);
            if (t < 0) {
                return NULL;
            }
            if (t) {
                r = tg_parent_call(self, "uncancel");
                if (r == NULL) {
                    return NULL;
                }
                Py_DECREF(r);
                r = tg_parent_call(self, "cancel");
                if (r == NULL) {
                    return NULL;
                }
                Py_DECREF(r);
            }
        }
        PyObject *errors = self->errors;
        self->errors = NULL;
        self->errors_none = 1;
        if (st->tg_v315 && et != Py_None) {
            /* A lone GeneratorExit from the body is raised as itself (an
             * async generator's aclose() then works). */
            int g = PyObject_IsSubclass(et, PyExc_GeneratorExit);
            if (g < 0 || (g > 0 && PyList_GET_SIZE(errors) == 1)) {
                Py_DECREF(errors);
                return g < 0 ? NULL : tg_raise(Py_NewRef(exc_value));
            }
        }
        PyObject *me = PyObject_CallFunction(
            PyExc_BaseExceptionGroup, "sN", "unhandled errors in a TaskGroup",
            errors);
        if (me == NULL) {
            return NULL;
        }
        /* raise me from None */
        PyErr_SetObject((PyObject *)Py_TYPE(me), me);
        PyException_SetCause(me, NULL);
        Py_DECREF(me);
        return NULL;
    }
    /* 3.15: "Suppress any remaining exception" -- return True.  Before,
     * None; the body's exception can get this far only when cancel()
     * cancelled the body (3.15's semantics: it is suppressed). */
    int own = TG_HAS(self, TG_F_OWN_CANCEL) && et != Py_None;
    *result = Py_NewRef(st->tg_v315 || own
                            ? Py_True
                            : Py_None);
    return NULL;
}

static const fw_coro_def tg_aexit_def = {"TaskGroup.__aexit__",
                                         tg_aexit_step};

static PyObject *
tg_aexit(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames)
{
    fw_state *st = TG_CAST(op)->st;
    PyObject *bound = NULL;
    PyObject *items[3];
    if (nargs != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        bound = fw_bind(st, "tg_aexit", op, args, nargs, kwnames);
        if (bound == NULL) {
            return NULL;
        }
        for (int i = 0; i < 3; i++) {
            items[i] = PyTuple_GET_ITEM(bound, i);
        }
        args = items;
    }
    PyObject *x = PyTuple_Pack(3, op, args[0], args[1]);
    Py_XDECREF(bound);
    if (x == NULL) {
        return NULL;
    }
    PyObject *coro = fw_coro_new(st, &tg_aexit_def, x);
    Py_DECREF(x);
    return coro;
}

/* ------------------------------------------------------------------ */
/* The type */

static int
tg_traverse(PyObject *op, visitproc visit, void *arg)
{
    TaskGroupObject *self = TG_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->dict);
    Py_VISIT(self->loop);
    Py_VISIT(self->parent_task);
    Py_VISIT(self->parent_weak);
    Py_VISIT(self->tasks);
    Py_VISIT(self->pytasks);
    Py_VISIT(self->sched);
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        Py_VISIT(self->slots[i].task);
    }
    Py_VISIT(self->errors);
    Py_VISIT(self->base_error);
    Py_VISIT(self->on_completed_fut);
    Py_VISIT(self->callback);
    Py_VISIT(self->exit_propagate);
    Py_VISIT(self->exit_pending);
    Py_VISIT(self->limit_obj);
    Py_VISIT(self->slot_queue);
    return 0;
}

static void
tg_reset(TaskGroupObject *self)
{
    Py_CLEAR(self->loop);
    self->loop_kind = 0;
    Py_CLEAR(self->parent_task);
    Py_CLEAR(self->parent_weak);
    Py_CLEAR(self->errors);
    Py_CLEAR(self->base_error);
    Py_CLEAR(self->on_completed_fut);
    Py_CLEAR(self->exit_propagate);
    Py_CLEAR(self->exit_pending);
    self->exit_waiting = 0;
    self->errors_none = 0;
    self->entered = 0;
    self->exiting = 0;
    self->aborting = 0;
    self->parent_cancel_requested = 0;
    self->flags = 0;
}

static int
tg_clear(PyObject *op)
{
    TaskGroupObject *self = TG_CAST(op);
    tg_reset(self);
    Py_CLEAR(self->dict);
    Py_CLEAR(self->tasks);
    Py_CLEAR(self->pytasks);
    Py_CLEAR(self->sched);
    self->sched_head = 0;
    self->nmoved = 0;
    self->stdlib_mode = 0; /* a later use starts over */
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        Py_CLEAR(self->slots[i].task);
    }
    self->nslots = self->nfree = self->nlive = 0;
    self->nscheduled = self->nfailing = 0;
    Py_CLEAR(self->limit_obj);
    Py_CLEAR(self->slot_queue);
    self->limit = self->nholding = self->slot_head = 0;
    if (self->callback != NULL) {
        Py_CLEAR(((TGCallback *)self->callback)->group);
        Py_CLEAR(self->callback);
    }
    return 0;
}

static void
tg_dealloc(PyObject *op)
{
    TaskGroupObject *self = TG_CAST(op);
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    (void)tg_clear(op);
    PyMem_Free(self->slots);
    PyMem_Free(self->free_slots);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
tg_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    TaskGroupObject *self = (TaskGroupObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->st = fw_state_from_type(type);
    int h = tg_type_hooks(self->st, type);
    if (h < 0 || (h > 0 && tg_to_stdlib(self) < 0)) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* TaskGroup(*, limit=None): the limit as an exact int (new reference),
 * NULL for None, or NULL with the error docs/extras.md gives. */
static PyObject *
tg_check_limit(PyObject *limit, Py_ssize_t *value)
{
    *value = 0;
    if (limit == Py_None) {
        return NULL;
    }
    if (!PyLong_Check(limit) || PyBool_Check(limit)) {
        fw_type_error_naming_type("limit must be an int or None, not %U",
                                  limit);
        return NULL;
    }
    PyObject *n = PyNumber_Index(limit);
    if (n == NULL) {
        return NULL;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(n, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(n);
        return NULL;
    }
    if (overflow < 0 || (overflow == 0 && v < 1)) {
        PyErr_Format(PyExc_ValueError, "limit must be >= 1, got %R", n);
        Py_DECREF(n);
        return NULL;
    }
    *value = overflow > 0 || v > (long long)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX
                                                          : (Py_ssize_t)v;
    return n;
}

static int
tg_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    TaskGroupObject *self = TG_CAST(op);
    PyObject *limit = Py_None, *bound = NULL;
    if (PyTuple_GET_SIZE(args) != 0 ||
        (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        /* Bound by a Python __init__(self, *, limit=None): the
         * interpreter's own wording for arguments that do not bind. */
        bound = fw_bind_call(self->st, "tg_init", op, args, kwds);
        if (bound == NULL) {
            return -1;
        }
        limit = PyTuple_GET_ITEM(bound, 0);
    }
    Py_ssize_t value;
    PyObject *obj = tg_check_limit(limit, &value);
    Py_XDECREF(bound);
    if (obj == NULL && PyErr_Occurred()) {
        return -1;
    }
    tg_reset(self);
    Py_XSETREF(self->limit_obj, obj);
    self->limit = value;
    return 0;
}

PyDoc_STRVAR(tg_limit_doc,
             "The most tasks of the group that run their coroutine at once\n"
             "(TaskGroup(limit=N)); None when unlimited.  Read-only.");

static PyObject *
tg_get_limit(PyObject *op, void *Py_UNUSED(closure))
{
    PyObject *limit = TG_CAST(op)->limit_obj;
    return Py_NewRef(limit != NULL ? limit : Py_None);
}

/* ------------------------------------------------------------------ */
/* The stdlib's private names (see "Stdlib mode" above) */

static PyObject *
tg_abort_meth(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (tg_abort(TG_CAST(op)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tg_on_task_done_meth(PyObject *op, PyObject *task)
{
    if (tg_on_task_done(TG_CAST(op), task, TG_IN_SET) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tg_is_base_error_meth(PyObject *Py_UNUSED(op), PyObject *exc)
{
    return PyBool_FromLong(is_base_error(exc));
}

static PyObject *
tg_get_tasks(PyObject *op, void *Py_UNUSED(closure))
{
    TaskGroupObject *self = TG_CAST(op);
    if (tg_to_stdlib(self) < 0) {
        return NULL;
    }
    return Py_NewRef(self->pytasks);
}

static int
tg_set_tasks(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    TaskGroupObject *self = TG_CAST(op);
    if (value == NULL || !PySet_Check(value)) {
        PyErr_SetString(PyExc_TypeError,
                        "fastwait: TaskGroup._tasks must be a set");
        return -1;
    }
    if (tg_to_stdlib(self) < 0) {
        return -1;
    }
    Py_SETREF(self->pytasks, Py_NewRef(value));
    return 0;
}

static PyObject *
tg_get_errors(PyObject *op, void *Py_UNUSED(closure))
{
    TaskGroupObject *self = TG_CAST(op);
    if (self->errors == NULL) {
        if (self->errors_none) {
            Py_RETURN_NONE;
        }
        if ((self->errors = PyList_New(0)) == NULL) {
            return NULL;
        }
    }
    return Py_NewRef(self->errors);
}

static int
tg_set_errors(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    TaskGroupObject *self = TG_CAST(op);
    if (value == Py_None) {
        Py_CLEAR(self->errors);
        self->errors_none = 1;
        return 0;
    }
    if (value == NULL || !PyList_Check(value)) {
        PyErr_SetString(PyExc_TypeError,
                        "fastwait: TaskGroup._errors must be a list or None");
        return -1;
    }
    Py_XSETREF(self->errors, Py_NewRef(value));
    self->errors_none = 0;
    return 0;
}

/* The char flags: closure is the field's offset. */
static PyObject *
tg_get_flag(PyObject *op, void *closure)
{
    return PyBool_FromLong(*((char *)op + (size_t)closure));
}

static int
tg_set_flag(PyObject *op, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    int t = PyObject_IsTrue(value);
    if (t < 0) {
        return -1;
    }
    *((char *)op + (size_t)closure) = (char)t;
    return 0;
}

/* The object fields (None when NULL): closure is the field's offset. */
static PyObject *
tg_get_obj(PyObject *op, void *closure)
{
    PyObject *v = *(PyObject **)((char *)op + (size_t)closure);
    return Py_NewRef(v != NULL ? v : Py_None);
}

static int
tg_set_obj(PyObject *op, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    PyObject **field = (PyObject **)((char *)op + (size_t)closure);
    Py_XSETREF(*field, value == Py_None ? NULL : Py_NewRef(value));
    return 0;
}

static PyObject *
tg_get_parent(PyObject *op, void *Py_UNUSED(closure))
{
    PyObject *p = tg_parent(TG_CAST(op));
    return p != NULL ? p : Py_NewRef(Py_None);
}

static int
tg_set_parent(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    TaskGroupObject *self = TG_CAST(op);
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    Py_CLEAR(self->parent_weak);
    Py_XSETREF(self->parent_task, value == Py_None ? NULL
                                                    : Py_NewRef(value));
    return 0;
}

static PyObject *
tg_get_loop(PyObject *op, void *Py_UNUSED(closure))
{
    TaskGroupObject *self = TG_CAST(op);
    return Py_NewRef(self->loop != NULL ? self->loop : Py_None);
}

/* The group calls into its loop once entered: None is then kept as the
 * object None (whose methods fail as the stdlib's would), never NULL. */
static int
tg_set_loop(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    TaskGroupObject *self = TG_CAST(op);
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    Py_XSETREF(self->loop, value == Py_None && !self->entered
                               ? NULL
                               : Py_NewRef(value));
    self->loop_kind = 0;
    return 0;
}

#define TG_OFF(f) ((void *)offsetof(TaskGroupObject, f))

static PyGetSetDef tg_getset[] = {
    {"limit", tg_get_limit, NULL, tg_limit_doc, NULL},
    {"_tasks", tg_get_tasks, tg_set_tasks,
     "The unfinished children (asyncio.TaskGroup's private set).", NULL},
    {"_errors", tg_get_errors, tg_set_errors, NULL, NULL},
    {"_entered", tg_get_flag, tg_set_flag, NULL, TG_OFF(entered)},
    {"_exiting", tg_get_flag, tg_set_flag, NULL, TG_OFF(exiting)},
    {"_aborting", tg_get_flag, tg_set_flag, NULL, TG_OFF(aborting)},
    {"_parent_cancel_requested", tg_get_flag, tg_set_flag, NULL,
     TG_OFF(parent_cancel_requested)},
    {"_loop", tg_get_loop, tg_set_loop, NULL, NULL},
    {"_parent_task", tg_get_parent, tg_set_parent, NULL, NULL},
    {"_base_error", tg_get_obj, tg_set_obj, NULL, TG_OFF(base_error)},
    {"_on_completed_fut", tg_get_obj, tg_set_obj, NULL,
     TG_OFF(on_completed_fut)},
    {NULL},
};

/* create_task's docstring (its signature: 3.14's takes **kwargs) is
 * chosen in fw_taskgroup_init. */
static PyMethodDef tg_methods[] = {
    {"__aenter__", (PyCFunction)(void (*)(void))tg_aenter,
     METH_FASTCALL | METH_KEYWORDS, "__aenter__($self, /)\n--\n\n"},
    {"__aexit__", (PyCFunction)(void (*)(void))tg_aexit,
     METH_FASTCALL | METH_KEYWORDS,
     "__aexit__($self, et, exc, tb)\n--\n\n"},
    {"create_task", (PyCFunction)(void (*)(void))tg_create_task,
     METH_FASTCALL | METH_KEYWORDS, tg_create_task_doc},
    {"cancel", (PyCFunction)(void (*)(void))tg_cancel,
     METH_FASTCALL | METH_KEYWORDS, tg_cancel_doc},
    {"_abort", tg_abort_meth, METH_NOARGS, "_abort($self, /)\n--\n\n"},
    {"_on_task_done", tg_on_task_done_meth, METH_O,
     "_on_task_done($self, task, /)\n--\n\n"},
    {"_is_base_error", tg_is_base_error_meth, METH_O,
     "_is_base_error($self, exc, /)\n--\n\n"},
    {NULL},
};

static PyMemberDef tg_members[] = {
    {"__dictoffset__", Py_T_PYSSIZET, offsetof(TaskGroupObject, dict),
     Py_READONLY},
    {"__weaklistoffset__", Py_T_PYSSIZET,
     offsetof(TaskGroupObject, weakreflist), Py_READONLY},
    {NULL},
};

PyDoc_STRVAR(
    tg_doc,
    "TaskGroup(*, limit=None)\n--\n\n"
    "Asynchronous context manager for managing groups of tasks.\n\n"
    "Example use:\n\n"
    "    async with fastwait.TaskGroup() as group:\n"
    "        task1 = group.create_task(some_coroutine(...))\n"
    "        task2 = group.create_task(other_coroutine(...))\n"
    "    print(\"Both tasks have completed now.\")\n\n"
    "All tasks are awaited when the context manager exits.\n\n"
    "Any exceptions other than `asyncio.CancelledError` raised within\n"
    "a task will cancel all remaining tasks and wait for them to exit.\n"
    "The exceptions are then combined and raised as an `ExceptionGroup`.\n\n"
    "A drop-in replacement for asyncio.TaskGroup with the semantics of the\n"
    "running Python version.\n\n"
    "limit: None (the default, asyncio's TaskGroup) or an int >= 1, the\n"
    "most tasks of the group that run their coroutine at once.  Beyond\n"
    "it, create_task() still returns a Task at once, but its coroutine\n"
    "starts only when a slot frees (in creation order); cancelling such\n"
    "a waiting task closes its coroutine unstarted.  Its tasks run a\n"
    "fastwait wrapper around the coroutine (task.get_coro()).");

static PyType_Slot tg_slots[] = {
    {Py_tp_doc, (void *)tg_doc},
    {Py_tp_repr, tg_repr},
    {Py_tp_traverse, tg_traverse},
    {Py_tp_clear, tg_clear},
    {Py_tp_dealloc, tg_dealloc},
    {Py_tp_new, tg_new},
    {Py_tp_init, tg_init},
    {Py_tp_methods, tg_methods},
    {Py_tp_members, tg_members},
    {Py_tp_getset, tg_getset},
    {0, NULL},
};

static PyType_Spec tg_spec = {
    .name = "fastwait._fastwait.TaskGroup",
    .basicsize = sizeof(TaskGroupObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = tg_slots,
};

/* Signatures for the interpreter's own argument errors (fw_bind). */
static const char tg_signatures_src[] =
    "class TaskGroup:\n"
    "    def __init__(self, *, limit=None): return (limit,)\n"
    "    def create_task(self, coro, **kwargs): return (coro, kwargs)\n"
    "    def cancel(self): pass\n"
    "tg_create_task_kw = TaskGroup.create_task\n"
    "tg_cancel = TaskGroup.cancel\n"
    "tg_init = TaskGroup.__init__\n"
    "del TaskGroup\n";

/* TaskGroup's version switches, in one place.  The patch releases are
 * those whose asyncio/taskgroups.py changed (3.13's NEWS; the 3.12 ones
 * are the same fixes' backports). */
static void
tg_decide_versions(fw_state *st)
{
    unsigned long v = Py_Version >> 8; /* 0xMMmmpp */
    st->tg_v313 = v >= 0x030D00;
    /* gh-124958: 3.12.8, 3.13.1 */
    st->tg_aexit_clears = v >= 0x030D01 || (v >= 0x030C08 && v < 0x030D00);
    /* gh-128550/gh-128588 (and gh-128552): 3.12.9, 3.13.2 */
    st->tg_always_add = v >= 0x030D02 || (v >= 0x030C09 && v < 0x030D00);
    st->tg_v314 = v >= 0x030E00;
    st->tg_v315 = v >= 0x030F00;
}

int
fw_taskgroup_init(PyObject *module, fw_state *st)
{
    tg_decide_versions(st);
    /* asyncio.Future.done's C function (METH_NOARGS), for tg_may_skip. */
    st->tg_future_done = NULL;
    for (PyMethodDef *m = st->FutureType->tp_methods; m != NULL &&
                                                      m->ml_name != NULL;
         m++) {
        if (strcmp(m->ml_name, "done") == 0 &&
            (m->ml_flags & ~METH_COEXIST) == METH_NOARGS) {
            st->tg_future_done = m->ml_meth;
        }
    }
    PyObject *ran = PyRun_String(tg_signatures_src, Py_file_input,
                                 st->signatures, st->signatures);
    if (ran == NULL) {
        return -1;
    }
    Py_DECREF(ran);
    st->TaskGroupCallbackType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &tgcb_spec, NULL);
    if (st->TaskGroupCallbackType == NULL) {
        return -1;
    }
    st->TaskGroupSlotWrapperType = fw_coro_type_new(module, &sw_spec);
    if (st->TaskGroupSlotWrapperType == NULL) {
        return -1;
    }
    st->kw_loop_name_context = Py_BuildValue("(sss)", "loop", "name",
                                             "context");
    if (st->kw_loop_name_context == NULL) {
        return -1;
    }
    /* 3.14+: create_task(coro, **kwargs).  (The table is static and the
     * version the process's: setting it again changes nothing.) */
    for (PyMethodDef *m = tg_methods; st->tg_v314 && m->ml_name != NULL;
         m++) {
        if (strcmp(m->ml_name, "create_task") == 0) {
            m->ml_doc = tg_create_task_kw_doc;
        }
    }
    st->TaskGroupType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &tg_spec, NULL);
    if (st->TaskGroupType == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "TaskGroup",
                                 (PyObject *)st->TaskGroupType);
}

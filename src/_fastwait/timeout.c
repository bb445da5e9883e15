/* Timeout, timeout() and timeout_at(): asyncio.timeouts in C.
 *
 * The stdlib gives every entered scope its own loop TimerHandle: creating
 * and cancelling it is most of what a scope that does not expire costs.
 * Here the deadlines of all scopes on a loop live in one binary heap (a
 * Scheduler per loop) behind ONE loop timer, armed at the earliest deadline
 * and re-armed only when a deadline earlier than the armed one arrives.  A
 * scope that exits just leaves the heap; a timer left armed for a deadline
 * that is gone fires with nothing due and re-arms for the next one.
 *
 * When the timer fires it expires every deadline the loop's own timer
 * processing would have run in that iteration: the stdlib runs each timer
 * whose `when < loop.time() + clock resolution`.  So a deadline fires in
 * the same loop iteration as the stdlib's TimerHandle would (exactly so on a
 * loop whose clock stands still within an iteration, as a virtual clock
 * does), also when a test replaces loop.time(): we read the loop's clock,
 * never our own (fw_loop_time reads time.monotonic() in C only while that
 * is provably what loop.time() returns).
 *
 * The heap is used only for deadlines still in the future that are finite
 * floats or ints, on loops whose timers we know (asyncio's BaseEventLoop
 * and uvloop's Loop with their own call_at).  A deadline already passed is
 * expired by a call_soon() callback as in the stdlib (its place in the
 * ready queue, before the task's own next step, decides the iteration in
 * which the body sees the cancellation); anything else (NaN, infinity,
 * other number types, other loops) takes the stdlib's path too, a handle
 * per scope, so that its behaviour -- including the loop's own failures --
 * is the stdlib's.
 */
#include "state.h"
#include <math.h>
#include <stdint.h>
#include <time.h>

enum { T_CREATED, T_ENTERED, T_EXPIRING, T_EXPIRED, T_EXITED };
static const char *const state_values[] = {
    "created", "active", "expiring", "expired", "finished",
};

typedef struct Scheduler Scheduler;

typedef struct {
    PyObject_HEAD
    fw_state *st;        /* looked up once, at creation */
    PyObject *when;      /* the deadline as given: None or a number */
    PyObject *task;      /* the task the scope was entered in */
    PyObject *cancelling; /* task.cancelling() at entry */
    PyObject *handle;    /* per-scope TimerHandle/Handle (the stdlib's
                            path), or NULL */
    PyObject *waiter;    /* wait_for (3.11) timers: the future to release
                            instead of cancelling a task */
    fw_deadline_fn fire; /* native deadlines (fw_deadline_new): called
                            with `owner` instead of cancelling a task */
    PyObject *owner;
    char native;         /* made by fw_deadline_new */
    Scheduler *sched;    /* the heap we are in, or NULL */
    double deadline;     /* `when` as a double while in the heap */
    uint64_t seq;        /* ties in the heap go by arrival */
    Py_ssize_t index;    /* position in sched->heap */
    int state;
    PyObject *weakreflist;
    PyObject *dict;      /* instance attributes, as the stdlib's take */
} TimeoutObject;

struct Scheduler {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *module;  /* ours: its state registers us (our type may be
                          gone already when the collector frees us) */
    PyObject *loop;
    PyObject *handle;  /* the armed TimerHandle, or NULL */
    double armed;      /* its deadline */
    double resolution; /* the loop's clock resolution */
    int ulp;           /* 3.15+ asyncio loops: the resolution added is at
                          least one ulp of the clock's reading */
    TimeoutObject **heap; /* strong references, ordered by (deadline, seq) */
    Py_ssize_t len, cap;
    uint64_t seq;
};

#define Timeout_CAST(op) ((TimeoutObject *)(op))
#define Sched_CAST(op) ((Scheduler *)(op))

/* ------------------------------------------------------------------ */
/* The heap */

static inline int
heap_less(TimeoutObject *a, TimeoutObject *b)
{
    return a->deadline < b->deadline ||
           (a->deadline == b->deadline && a->seq < b->seq);
}

static inline void
heap_set(Scheduler *s, Py_ssize_t i, TimeoutObject *t)
{
    s->heap[i] = t;
    t->index = i;
}

static void
heap_sift_up(Scheduler *s, Py_ssize_t i)
{
    TimeoutObject *t = s->heap[i];
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (!heap_less(t, s->heap[parent])) {
            break;
        }
        heap_set(s, i, s->heap[parent]);
        i = parent;
    }
    heap_set(s, i, t);
}

static void
heap_sift_down(Scheduler *s, Py_ssize_t i)
{
    TimeoutObject *t = s->heap[i];
    for (;;) {
        Py_ssize_t child = 2 * i + 1;
        if (child >= s->len) {
            break;
        }
        if (child + 1 < s->len && heap_less(s->heap[child + 1],
                                            s->heap[child])) {
            child++;
        }
        if (!heap_less(s->heap[child], t)) {
            break;
        }
        heap_set(s, i, s->heap[child]);
        i = child;
    }
    heap_set(s, i, t);
}

/* Take t out of its scheduler's heap; the heap's references to t and
 * t's to the scheduler are released (t must be kept alive by the caller). */
static void
heap_remove(TimeoutObject *t)
{
    Scheduler *s = t->sched;
    Py_ssize_t i = t->index;
    assert(s != NULL && i >= 0 && i < s->len && s->heap[i] == t);
    TimeoutObject *last = s->heap[--s->len];
    if (i < s->len) {
        heap_set(s, i, last);
        if (i > 0 && heap_less(last, s->heap[(i - 1) / 2])) {
            heap_sift_up(s, i);
        }
        else {
            heap_sift_down(s, i);
        }
    }
    t->sched = NULL;
    t->index = -1;
    Py_DECREF(t);
    Py_DECREF(s);
}

/* ------------------------------------------------------------------ */
/* The loop's clock */

/* time.monotonic() read in C: 1 with *now set, 0 when this build cannot
 * reproduce it (the caller calls loop.time() instead).  The value must be
 * bit-identical to what time.monotonic() returns.  3.13+ has the public
 * PyTime API for exactly that; before, on Linux, time.monotonic() is
 * clock_gettime(CLOCK_MONOTONIC) made into nanoseconds (clamped to int64
 * on overflow) and converted by _PyTime_AsSecondsDouble, which is
 * reproduced here step by step. */
static int
monotonic_now(double *now)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_Monotonic(&t) < 0) {
        PyErr_Clear(); /* loop.time() will raise it, from its own frame */
        return 0;
    }
    *now = PyTime_AsSecondsDouble(t);
    return 1;
#elif defined(__linux__) && defined(CLOCK_MONOTONIC)
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0;
    }
    const int64_t sec_to_ns = 1000000000;
    int64_t t = (int64_t)ts.tv_sec;
    if (t > INT64_MAX / sec_to_ns || t < INT64_MIN / sec_to_ns) {
        t = t >= 0 ? INT64_MAX : INT64_MIN;
    }
    else {
        t *= sec_to_ns;
    }
    int64_t ns = (int64_t)ts.tv_nsec;
    if (ns > 0 && t > INT64_MAX - ns) {
        t = INT64_MAX;
    }
    else if (ns < 0 && t < INT64_MIN - ns) {
        t = INT64_MIN;
    }
    else {
        t += ns;
    }
    /* volatile: as CPython's, so that no optimization changes the
     * rounding */
    volatile double d;
    if (t % sec_to_ns == 0) {
        d = (double)(t / sec_to_ns);
    }
    else {
        d = (double)t;
        d /= 1e9;
    }
    *now = d;
    return 1;
#else
    (void)now;
    return 0;
#endif
}

/* Read the loop's clock: 1 with *now set (read in C), 0 with *res set to
 * what loop.time() returned (a new reference), -1 error.
 *
 * The clock is read in C only when loop.time() would provably return the
 * same: the attribute `time` of the loop (one ordinary attribute lookup,
 * so an instance attribute, a patched or overriding class attribute, a
 * __getattribute__ are all honoured) is BaseEventLoop.time bound to the
 * loop, with its original code, whose global `time` is still the time
 * module, whose `monotonic` is still the original builtin (so
 * mock.patch('time.monotonic') or of 'asyncio.base_events.time' is
 * honoured too).  uvloop's loop.time() is C already: it is called. */
static int
loop_clock(fw_state *st, PyObject *loop, double *now, PyObject **res)
{
    *res = NULL;
    /* Loops whose type's `time` is another (uvloop's C method, an
     * override) are called as before, without binding the method first.
     * Only which path is taken is cached: either is right whatever the
     * type becomes later. */
    PyTypeObject *tp = Py_TYPE(loop);
    if (tp != (PyTypeObject *)st->clock_type) {
        PyObject *f = PyObject_GetAttr((PyObject *)tp, st->str_time);
        if (f == NULL) {
            PyErr_Clear(); /* the call below raises what it raises */
        }
        st->clock_type_base = f != NULL && f == st->base_time;
        Py_XDECREF(f);
        Py_XSETREF(st->clock_type, Py_NewRef((PyObject *)tp));
    }
    if (!st->clock_type_base) {
        *res = PyObject_CallMethodNoArgs(loop, st->str_time);
        return *res != NULL ? 0 : -1;
    }
    PyObject *meth = PyObject_GetAttr(loop, st->str_time);
    if (meth == NULL) {
        return -1;
    }
    if (PyMethod_Check(meth) && PyMethod_GET_FUNCTION(meth) == st->base_time &&
        PyMethod_GET_SELF(meth) == loop &&
        PyFunction_GET_CODE(st->base_time) == st->base_time_code &&
        PyDict_GetItemWithError(st->base_events_dict, st->str_time) ==
            st->time_module &&
        PyDict_GetItemWithError(st->time_dict, st->str_monotonic) ==
            st->time_monotonic &&
        monotonic_now(now)) {
        Py_DECREF(meth);
        return 1;
    }
    if (PyErr_Occurred()) { /* from a dict look-up: not expected */
        Py_DECREF(meth);
        return -1;
    }
    *res = PyObject_CallNoArgs(meth);
    Py_DECREF(meth);
    return *res != NULL ? 0 : -1;
}

int
fw_loop_time(fw_state *st, PyObject *loop, double *now)
{
    PyObject *res;
    int r = loop_clock(st, loop, now, &res);
    if (r != 0) {
        return r > 0 ? 0 : -1;
    }
    *now = PyFloat_AsDouble(res);
    Py_DECREF(res);
    return *now == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Schedulers: one per loop */

/* Arm the loop timer at `when`.  -1 error. */
static int
sched_arm(fw_state *st, Scheduler *s, double when)
{
    PyObject *w = PyFloat_FromDouble(when);
    if (w == NULL) {
        return -1;
    }
    PyObject *args[4] = {s->loop, w, (PyObject *)s, st->empty_context};
    PyObject *h = PyObject_VectorcallMethod(
        st->str_call_at, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
        st->kw_context);
    Py_DECREF(w);
    if (h == NULL) {
        return -1;
    }
    Py_XSETREF(s->handle, h);
    s->armed = when;
    return 0;
}

static int
cancel_handle(fw_state *st, PyObject **phandle)
{
    PyObject *h = *phandle;
    *phandle = NULL;
    PyObject *r = PyObject_CallMethodNoArgs(h, st->str_cancel);
    Py_DECREF(h);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Put t into s at `deadline`.  -1 error (t not added). */
static int
sched_push(fw_state *st, Scheduler *s, TimeoutObject *t, double deadline)
{
    if (s->len == s->cap) {
        Py_ssize_t cap = s->cap < 8 ? 8 : s->cap * 2;
        TimeoutObject **heap = PyMem_Realloc(s->heap,
                                             (size_t)cap * sizeof(*heap));
        if (heap == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->heap = heap;
        s->cap = cap;
    }
    t->deadline = deadline;
    t->seq = s->seq++;
    t->sched = (Scheduler *)Py_NewRef(s);
    s->heap[s->len] = (TimeoutObject *)Py_NewRef(t);
    t->index = s->len++;
    heap_sift_up(s, t->index);
    if (s->handle == NULL || deadline < s->armed) {
        if ((s->handle != NULL && cancel_handle(st, &s->handle) < 0) ||
            sched_arm(st, s, deadline) < 0) {
            heap_remove(t);
            return -1;
        }
    }
    return 0;
}

static int timeout_fire(fw_state *st, TimeoutObject *t);

/* The loop's `end_time` for a clock reading `now`: timers earlier than it
 * are due.  `now + resolution`; on 3.15+ asyncio loops
 * `now + max(resolution, math.ulp(now))`, so that it is strictly
 * increasing when the resolution is below the clock's precision. */
static double
sched_end_time(Scheduler *s, double now)
{
    double res = s->resolution;
    if (s->ulp) {
        double a = fabs(now);
        double u = isfinite(a) ? nextafter(a, INFINITY) - a : a;
        if (u > res) {
            res = u;
        }
    }
    return now + res;
}

/* The loop timer: expire every deadline due in this iteration, re-arm for
 * the next one.  Expiring runs task.cancel(), i.e. possibly user code that
 * enters or leaves other scopes: the heap is re-read after each one. */
static PyObject *
sched_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                 PyObject *kwnames)
{
    Scheduler *s = Sched_CAST(op);
    fw_state *st = fw_state_from_type(Py_TYPE(op));
    Py_INCREF(s);
    Py_CLEAR(s->handle); /* the handle running us */
    PyObject *error = NULL;
    double cutoff;
    if (fw_loop_time(st, s->loop, &cutoff) < 0) {
        error = fw_err_fetch();
    }
    else {
        cutoff = sched_end_time(s, cutoff);
        while (s->len > 0 && s->heap[0]->deadline < cutoff) {
            TimeoutObject *t = (TimeoutObject *)Py_NewRef(s->heap[0]);
            heap_remove(t);
            int r = timeout_fire(st, t);
            Py_DECREF(t);
            if (r < 0) {
                error = fw_err_fetch();
                break;
            }
        }
    }
    if (s->len > 0 && s->handle == NULL &&
        sched_arm(st, s, s->heap[0]->deadline) < 0) {
        PyObject *e = fw_err_fetch();
        if (error == NULL) {
            error = e;
        }
        else {
            Py_DECREF(e);
        }
    }
    Py_DECREF(s);
    if (error != NULL) {
        fw_err_restore(error);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The resolution the loop's timer processing adds to its clock, or -1 if
 * we do not know this loop's timers (then scopes take the stdlib's path).
 * Known: asyncio's BaseEventLoop subclasses (its _clock_resolution) and
 * uvloop's Loop (millisecond timers: a deadline is due once its rounded
 * millisecond is), as long as call_at is their own. */
static double
loop_timer_resolution(fw_state *st, PyObject *loop, int *is_asyncio)
{
    *is_asyncio = 0;
    PyTypeObject *tp = Py_TYPE(loop);
    PyObject *known = PyDict_GetItemWithError(st->timer_loop_types,
                                              (PyObject *)tp);
    if (known == NULL) {
        if (PyErr_Occurred()) {
            return -2.0;
        }
        PyObject *call_at = PyObject_GetAttr((PyObject *)tp, st->str_call_at);
        if (call_at == NULL) {
            return -2.0;
        }
        const char *kind = "";
        if (call_at == st->base_call_at) {
            kind = "asyncio";
        }
        else {
            PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
            PyObject *uvloop = PyDict_GetItemString(modules, "uvloop");
            PyObject *uv_loop = uvloop != NULL
                                    ? PyObject_GetAttrString(uvloop, "Loop")
                                    : NULL;
            PyObject *uv_call_at = uv_loop != NULL
                                       ? PyObject_GetAttr(uv_loop,
                                                          st->str_call_at)
                                       : NULL;
            PyErr_Clear();
            if (uv_call_at != NULL && uv_call_at == call_at) {
                kind = "uvloop";
            }
            Py_XDECREF(uv_loop);
            Py_XDECREF(uv_call_at);
        }
        Py_DECREF(call_at);
        known = PyUnicode_FromString(kind);
        if (known == NULL ||
            PyDict_SetItem(st->timer_loop_types, (PyObject *)tp, known) < 0) {
            Py_XDECREF(known);
            return -2.0;
        }
        Py_DECREF(known); /* the dict keeps it */
    }
    if (PyUnicode_GetLength(known) == 0) {
        return -1.0;
    }
    if (PyUnicode_CompareWithASCIIString(known, "uvloop") == 0) {
        return 0.0005;
    }
    *is_asyncio = 1;
    PyObject *res;
    int found = fw_getattr_optional(loop, st->str_clock_resolution, &res);
    if (found <= 0) {
        return found < 0 ? -2.0 : 0.0;
    }
    double r = PyFloat_AsDouble(res);
    Py_DECREF(res);
    if (r == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1.0; /* a strange resolution: the stdlib's path */
    }
    return r;
}

/* The scheduler of `loop` (a new reference), or NULL: with an error set,
 * or none when the loop's timers are not ones we know. */
static Scheduler *
sched_for(fw_state *st, PyObject *loop)
{
    Scheduler *s = st->last_scheduler;
    if (s != NULL && s->loop == loop) {
        return (Scheduler *)Py_NewRef(s);
    }
    PyObject *key = PyLong_FromVoidPtr(loop);
    if (key == NULL) {
        return NULL;
    }
    PyObject *ptr = PyDict_GetItemWithError(st->schedulers, key);
    if (ptr != NULL) {
        Py_DECREF(key);
        s = (Scheduler *)PyLong_AsVoidPtr(ptr);
        st->last_scheduler = s;
        return (Scheduler *)Py_NewRef(s);
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    int is_asyncio;
    double resolution = loop_timer_resolution(st, loop, &is_asyncio);
    if (resolution < 0) {
        Py_DECREF(key);
        return NULL; /* -1: unknown loop; -2: error */
    }
    s = PyObject_GC_New(Scheduler, st->SchedulerType);
    if (s == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    s->vectorcall = sched_vectorcall;
    s->module = PyType_GetModuleByDef(st->SchedulerType, &fw_module_def);
    Py_XINCREF(s->module);
    s->loop = Py_NewRef(loop);
    s->handle = NULL;
    s->armed = 0.0;
    s->resolution = resolution;
    s->ulp = st->timer_end_ulp && is_asyncio;
    s->heap = NULL;
    s->len = s->cap = 0;
    s->seq = 0;
    PyObject_GC_Track(s);
    /* The registry maps the loop's address to the scheduler's, without
     * references: a scheduler lives as long as a scope in its heap or its
     * armed timer holds it, and removes itself when it goes. */
    ptr = PyLong_FromVoidPtr(s);
    if (ptr == NULL || PyDict_SetItem(st->schedulers, key, ptr) < 0) {
        Py_XDECREF(ptr);
        Py_DECREF(key);
        Py_DECREF(s);
        return NULL;
    }
    Py_DECREF(ptr);
    Py_DECREF(key);
    st->last_scheduler = s;
    return s;
}

static int
sched_traverse(PyObject *op, visitproc visit, void *arg)
{
    Scheduler *s = Sched_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(s->module);
    Py_VISIT(s->loop);
    Py_VISIT(s->handle);
    for (Py_ssize_t i = 0; i < s->len; i++) {
        Py_VISIT(s->heap[i]);
    }
    return 0;
}

static int
sched_clear(PyObject *op)
{
    Scheduler *s = Sched_CAST(op);
    Py_CLEAR(s->handle);
    /* Only the collector gets here with scopes in the heap (each of them
     * holds the scheduler); it keeps us alive while we let them go. */
    while (s->len > 0) {
        TimeoutObject *t = s->heap[--s->len];
        t->sched = NULL;
        t->index = -1;
        Py_DECREF(t);
        Py_DECREF(s);
    }
    return 0;
}

static void
sched_dealloc(PyObject *op)
{
    Scheduler *s = Sched_CAST(op);
    fw_state *st = s->module != NULL ? fw_get_state(s->module) : NULL;
    PyObject_GC_UnTrack(op);
    if (st != NULL && st->last_scheduler == s) {
        st->last_scheduler = NULL;
    }
    if (st != NULL && st->schedulers != NULL && s->loop != NULL) {
        PyObject *exc = fw_err_fetch();
        PyObject *key = PyLong_FromVoidPtr(s->loop);
        if (key == NULL || PyDict_DelItem(st->schedulers, key) < 0) {
            PyErr_Clear();
        }
        Py_XDECREF(key);
        if (exc != NULL) {
            fw_err_restore(exc);
        }
    }
    (void)sched_clear(op);
    Py_CLEAR(s->loop);
    Py_CLEAR(s->module);
    PyMem_Free(s->heap);
    PyTypeObject *tp = Py_TYPE(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
sched_repr(PyObject *op)
{
    Scheduler *s = Sched_CAST(op);
    return PyUnicode_FromFormat("<fastwait deadlines: %zd pending>", s->len);
}

static PyMemberDef sched_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(Scheduler, vectorcall),
     Py_READONLY},
    {NULL},
};

static PyType_Slot sched_slots[] = {
    {Py_tp_doc, (void *)"The deadlines of one loop's timeout scopes, behind "
                        "one loop timer (calling it expires the due ones)."},
    {Py_tp_repr, sched_repr},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_traverse, sched_traverse},
    {Py_tp_clear, sched_clear},
    {Py_tp_dealloc, sched_dealloc},
    {Py_tp_members, sched_members},
    {0, NULL},
};

static PyType_Spec sched_spec = {
    .name = "fastwait._fastwait.Deadlines",
    .basicsize = sizeof(Scheduler),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = sched_slots,
};

/* ------------------------------------------------------------------ */
/* _release_waiter: wait_for's (3.11) callback and timer action */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *waiter;
} Release;

static PyObject *
release_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                   PyObject *kwnames)
{
    fw_state *st = fw_state_from_type(Py_TYPE(op));
    if (fw_release_waiter(st, ((Release *)op)->waiter) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *
fw_release_waiter_new(fw_state *st, PyObject *waiter)
{
    Release *self = PyObject_GC_New(Release, st->ReleaseType);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = release_vectorcall;
    self->waiter = Py_NewRef(waiter);
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int
release_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(((Release *)op)->waiter);
    return 0;
}

static int
release_clear(PyObject *op)
{
    Py_CLEAR(((Release *)op)->waiter);
    return 0;
}

static PyObject *
release_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<fastwait _release_waiter(%R)>",
                                ((Release *)op)->waiter);
}

static PyMemberDef release_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(Release, vectorcall),
     Py_READONLY},
    {NULL},
};

static PyType_Slot release_slots[] = {
    {Py_tp_doc, (void *)"wait_for's _release_waiter bound to its waiter."},
    {Py_tp_repr, release_repr},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_traverse, release_traverse},
    {Py_tp_clear, release_clear},
    {Py_tp_dealloc, fw_gc_dealloc},
    {Py_tp_members, release_members},
    {0, NULL},
};

static PyType_Spec release_spec = {
    .name = "fastwait._fastwait._release_waiter",
    .basicsize = sizeof(Release),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = release_slots,
};

/* ------------------------------------------------------------------ */
/* Timeout */

static TimeoutObject *
timeout_init_fields(fw_state *st, TimeoutObject *t, PyObject *when)
{
    t->st = st;
    t->when = Py_NewRef(when);
    t->task = NULL;
    t->cancelling = NULL;
    t->handle = NULL;
    t->waiter = NULL;
    t->fire = NULL;
    t->owner = NULL;
    t->native = 0;
    t->sched = NULL;
    t->deadline = 0.0;
    t->seq = 0;
    t->index = -1;
    t->state = T_CREATED;
    t->weakreflist = NULL;
    t->dict = NULL;
    return t;
}

PyObject *
fw_timeout_new(fw_state *st, PyObject *when)
{
    TimeoutObject *t;
    if (st->timeout_nfree > 0) {
        /* Memory of a dead Timeout (timeout_dealloc): a new object in it,
         * holding a reference to its type as PyObject_GC_New's do. */
        t = (TimeoutObject *)st->timeout_free[--st->timeout_nfree];
        (void)PyObject_Init((PyObject *)t, st->TimeoutType);
    }
    else {
        t = PyObject_GC_New(TimeoutObject, st->TimeoutType);
        if (t == NULL) {
            return NULL;
        }
    }
    timeout_init_fields(st, t, when);
    PyObject_GC_Track(t);
    return (PyObject *)t;
}

/* Whether the object's instance dict holds anything (then an attribute
 * may replace a method of its type); a managed or variable dict offset
 * counts as yes. */
static int
has_instance_attrs(PyObject *obj)
{
    Py_ssize_t offset = Py_TYPE(obj)->tp_dictoffset;
    if (offset <= 0) {
        return offset != 0;
    }
    PyObject *dict = *(PyObject **)((char *)obj + offset);
    return dict != NULL && PyDict_GET_SIZE(dict) != 0;
}

/* task.<name>() as the stdlib's `self._task.<name>()`: through attribute
 * lookup, so that an instance attribute replacing the method is called
 * (aiotools' TaskScope(shield=True) replaces cancel, cancelling and
 * uncancel on the host task).  asyncio's own Task with an empty instance
 * dict takes the method descriptor directly. */
static PyObject *
task_call(fw_state *st, PyObject *task, PyObject *name, PyObject *desc)
{
    if (task != NULL && Py_TYPE(task) == st->TaskType &&
        !has_instance_attrs(task)) {
        return PyObject_CallOneArg(desc, task);
    }
    return PyObject_CallMethodNoArgs(task != NULL ? task : Py_None, name);
}

/* _on_timeout: the deadline passed. */
static int
timeout_fire(fw_state *st, TimeoutObject *t)
{
    if (t->native) {
        if (t->fire == NULL) {
            return 0; /* cancelled or fired already */
        }
        /* A native deadline fires once: it lets go of its owner first. */
        fw_deadline_fn fire = t->fire;
        PyObject *owner = t->owner;
        t->fire = NULL;
        t->owner = NULL;
        Py_CLEAR(t->handle);
        int r = fire(owner);
        Py_DECREF(owner);
        return r;
    }
    if (t->waiter != NULL) {
        return fw_release_waiter(st, t->waiter);
    }
    if (t->state != T_ENTERED && !st->optimize) {
        PyErr_SetNone(PyExc_AssertionError);
        return -1;
    }
    PyObject *r = task_call(st, t->task, st->str_cancel, st->task_cancel);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    t->state = T_EXPIRING;
    Py_CLEAR(t->handle); /* drop the reference early, as the stdlib does */
    return 0;
}

/* Leave the heap or cancel the per-scope handle.  -1 error. */
static int
timeout_unschedule(fw_state *st, TimeoutObject *t)
{
    if (t->sched != NULL) {
        heap_remove(t);
    }
    if (t->handle != NULL) {
        return cancel_handle(st, &t->handle);
    }
    return 0;
}

/* Arm the deadline t->when on `loop` (NULL: the running loop): a future
 * finite deadline goes into the loop's heap, anything else gets a handle
 * of its own exactly as the stdlib's reschedule() makes it. */
static int
timeout_schedule(fw_state *st, TimeoutObject *t, PyObject *loop)
{
    PyObject *when = t->when;
    if (when == Py_None) {
        return 0;
    }
    if (loop == NULL) {
        loop = PyObject_CallNoArgs(st->get_running_loop);
        if (loop == NULL) {
            return -1;
        }
    }
    else {
        Py_INCREF(loop);
    }
    int r = -1;
    /* As the stdlib: a deadline that has passed is expired by a callback
     * queued now (it runs before what is queued after it in this
     * iteration, e.g. the task's next step), a later one by a timer. */
    double now_d = 0.0;
    PyObject *now;
    int in_c = loop_clock(st, loop, &now_d, &now);
    if (in_c < 0) {
        goto done;
    }
    if (!in_c && PyFloat_CheckExact(now)) {
        in_c = 1;
        now_d = PyFloat_AS_DOUBLE(now);
    }
    int past;
    double d = 0.0;
    int fast = 0;
    if (PyFloat_CheckExact(when) || PyLong_CheckExact(when)) {
        d = PyFloat_AsDouble(when);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear(); /* too large for a double: the stdlib's path */
        }
        else {
            /* A subclass's timer calls its own `self._on_timeout`: the
             * stdlib's path. */
            fast = isfinite(d) && in_c && Py_TYPE(t) == st->TimeoutType;
        }
    }
    if (fast) {
        past = d <= now_d;
    }
    else {
        if (now == NULL && (now = PyFloat_FromDouble(now_d)) == NULL) {
            goto done;
        }
        past = PyObject_RichCompareBool(when, now, Py_LE);
    }
    Py_XDECREF(now);
    if (past < 0) {
        goto done;
    }
    if (fast && !past) {
        Scheduler *s = sched_for(st, loop);
        if (s != NULL) {
            r = sched_push(st, s, t, d);
            Py_DECREF(s);
            goto done;
        }
        if (PyErr_Occurred()) {
            goto done;
        }
    }
    /* The stdlib's path: a handle of our own. */
    PyObject *cb = PyObject_GetAttr((PyObject *)t, st->str_on_timeout);
    if (cb == NULL) {
        goto done;
    }
    PyObject *h = past ? PyObject_CallMethodOneArg(loop, st->str_call_soon,
                                                   cb)
                       : PyObject_CallMethodObjArgs(loop, st->str_call_at,
                                                    when, cb, NULL);
    Py_DECREF(cb);
    if (h != NULL) {
        t->handle = h;
        r = 0;
    }
done:
    Py_DECREF(loop);
    return r;
}

/* reschedule(when): -1 error. */
static int
timeout_reschedule(fw_state *st, TimeoutObject *t, PyObject *when,
                   PyObject *loop)
{
    if (t->state != T_ENTERED) {
        if (t->state == T_CREATED) {
            PyErr_SetString(PyExc_RuntimeError,
                            "Timeout has not been entered");
        }
        else {
            PyErr_Format(PyExc_RuntimeError,
                         "Cannot change state of %s Timeout",
                         state_values[t->state]);
        }
        return -1;
    }
    Py_SETREF(t->when, Py_NewRef(when));
    if (timeout_unschedule(st, t) < 0) {
        return -1;
    }
    return timeout_schedule(st, t, loop);
}

int
fw_timeout_enter(fw_state *st, PyObject *op)
{
    TimeoutObject *t = Timeout_CAST(op);
    if (t->state != T_CREATED) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Timeout has already been entered");
        return -1;
    }
    PyObject *loop = PyObject_CallNoArgs(st->get_running_loop);
    if (loop == NULL) {
        return -1;
    }
    PyObject *task = PyObject_CallOneArg(st->current_task, loop);
    if (task == NULL) {
        Py_DECREF(loop);
        return -1;
    }
    if (task == Py_None) {
        Py_DECREF(task);
        Py_DECREF(loop);
        PyErr_SetString(PyExc_RuntimeError,
                        "Timeout should be used inside a task");
        return -1;
    }
    t->state = T_ENTERED;
    Py_XSETREF(t->task, task);
    PyObject *n = task_call(st, task, st->str_cancelling, st->task_cancelling);
    if (n == NULL) {
        Py_DECREF(loop);
        return -1;
    }
    Py_XSETREF(t->cancelling, n);
    int r;
    if (Py_TYPE(op) == st->TimeoutType) {
        r = timeout_reschedule(st, t, t->when, loop);
    }
    else {
        /* A subclass: `self.reschedule(self._when)`, as the stdlib's
         * __aenter__ does, so that an override is called. */
        PyObject *when = Py_NewRef(t->when);
        PyObject *res = PyObject_CallMethod(op, "reschedule", "O", when);
        Py_DECREF(when);
        Py_XDECREF(res);
        r = res == NULL ? -1 : 0;
    }
    Py_DECREF(loop);
    return r;
}

/* raise TimeoutError from cause */
static void
raise_timeout_from(PyObject *cause)
{
    PyObject *te = PyObject_CallNoArgs(PyExc_TimeoutError);
    if (te == NULL) {
        return;
    }
    if (cause == Py_None) {
        PyException_SetCause(te, NULL);
    }
    else if (PyExceptionInstance_Check(cause)) {
        PyException_SetCause(te, Py_NewRef(cause));
    }
    else if (PyExceptionClass_Check(cause)) {
        PyObject *c = PyObject_CallNoArgs(cause);
        if (c == NULL) {
            Py_DECREF(te);
            return;
        }
        PyException_SetCause(te, c);
    }
    else {
        Py_DECREF(te);
        PyErr_SetString(PyExc_TypeError,
                        "exception causes must derive from BaseException");
        return;
    }
    PyErr_SetObject(PyExc_TimeoutError, te);
    Py_DECREF(te);
}

/* 3.13's _insert_timeout_error: splice a TimeoutError into exc's context
 * chain just above the first CancelledError.  -1 error. */
static int
insert_timeout_error(fw_state *st, PyObject *exc)
{
    if (!PyExceptionInstance_Check(exc)) {
        /* Not an exception: the attribute lookup fails (or finds
         * something), as `exc_val.__context__` would. */
        PyObject *ctx = PyObject_GetAttrString(exc, "__context__");
        Py_XDECREF(ctx);
        return ctx == NULL ? -1 : 0;
    }
    Py_INCREF(exc);
    for (;;) {
        PyObject *ctx = PyException_GetContext(exc);
        if (ctx == NULL) {
            break;
        }
        int is_cancel = PyObject_IsInstance(ctx, st->CancelledError);
        if (is_cancel < 0) {
            Py_DECREF(ctx);
            Py_DECREF(exc);
            return -1;
        }
        if (is_cancel) {
            PyObject *te = PyObject_CallNoArgs(PyExc_TimeoutError);
            if (te == NULL) {
                Py_DECREF(ctx);
                Py_DECREF(exc);
                return -1;
            }
            PyException_SetContext(te, Py_NewRef(ctx));
            PyException_SetCause(te, ctx);
            PyException_SetContext(exc, te);
            break;
        }
        Py_SETREF(exc, ctx);
    }
    Py_DECREF(exc);
    return 0;
}

/* __aexit__(exc_type, exc_val, ...): 0 (the body's outcome stands), or -1
 * with the exception to raise instead. */
static int
timeout_exit(fw_state *st, TimeoutObject *t, PyObject *exc_type,
             PyObject *exc_val)
{
    if (t->state != T_ENTERED && t->state != T_EXPIRING && !st->optimize) {
        PyErr_SetNone(PyExc_AssertionError);
        return -1;
    }
    if (timeout_unschedule(st, t) < 0) {
        return -1;
    }
    if (t->state == T_EXPIRING) {
        t->state = T_EXPIRED;
        PyObject *n = task_call(st, t->task, st->str_uncancel,
                                st->task_uncancel);
        if (n == NULL) {
            return -1;
        }
        int ours = PyObject_RichCompareBool(n, t->cancelling, Py_LE);
        Py_DECREF(n);
        if (ours < 0) {
            return -1;
        }
        if (!ours) {
            return 0; /* a cancellation of someone else's is pending */
        }
        if (!st->timeout_splices_context) {
            /* 3.11, 3.12 */
            if (exc_type == st->CancelledError) {
                raise_timeout_from(exc_val);
                return -1;
            }
            return 0;
        }
        if (exc_type == Py_None) {
            return 0;
        }
        int is_cancel = PyObject_IsSubclass(exc_type, st->CancelledError);
        if (is_cancel < 0) {
            return -1;
        }
        if (is_cancel) {
            raise_timeout_from(exc_val);
            return -1;
        }
        if (exc_val != Py_None) {
            if (insert_timeout_error(st, exc_val) < 0) {
                return -1;
            }
            int group = PyObject_IsInstance(exc_val, st->ExceptionGroup);
            if (group < 0) {
                return -1;
            }
            if (group) {
                PyObject *excs = PyObject_GetAttr(exc_val, st->str_exceptions);
                PyObject *it = excs != NULL ? PyObject_GetIter(excs) : NULL;
                Py_XDECREF(excs);
                if (it == NULL) {
                    return -1;
                }
                PyObject *e;
                while ((e = PyIter_Next(it)) != NULL) {
                    int r = insert_timeout_error(st, e);
                    Py_DECREF(e);
                    if (r < 0) {
                        Py_DECREF(it);
                        return -1;
                    }
                }
                Py_DECREF(it);
                if (PyErr_Occurred()) {
                    return -1;
                }
            }
        }
    }
    else if (t->state == T_ENTERED) {
        t->state = T_EXITED;
    }
    return 0;
}

int
fw_timeout_exit(fw_state *st, PyObject *timeout, PyObject *exc)
{
    if (exc == NULL) {
        return timeout_exit(st, Timeout_CAST(timeout), Py_None, Py_None);
    }
    return timeout_exit(st, Timeout_CAST(timeout), (PyObject *)Py_TYPE(exc),
                        exc);
}

/* wait_for's (3.11) timer: call_later(delay, _release_waiter, waiter) on
 * the shared deadlines.  A new reference to cancel with
 * fw_release_timer_cancel(), or NULL with an error. */
PyObject *
fw_release_timer(fw_state *st, PyObject *loop, PyObject *delay,
                 PyObject *waiter)
{
    TimeoutObject *t = (TimeoutObject *)fw_timeout_new(st, Py_None);
    if (t == NULL) {
        return NULL;
    }
    t->waiter = Py_NewRef(waiter);
    t->state = T_ENTERED;
    double d = 0.0;
    int fast = 0;
    if (PyFloat_CheckExact(delay) || PyLong_CheckExact(delay)) {
        d = PyFloat_AsDouble(delay);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
        }
        else {
            fast = isfinite(d);
        }
    }
    if (fast) {
        Scheduler *s = sched_for(st, loop);
        if (s == NULL && PyErr_Occurred()) {
            goto error;
        }
        if (s != NULL) {
            double n;
            int r = fw_loop_time(st, loop, &n) < 0
                        ? -1
                        : sched_push(st, s, t, n + d);
            Py_DECREF(s);
            if (r < 0) {
                goto error;
            }
            return (PyObject *)t;
        }
    }
    PyObject *cb = fw_release_waiter_new(st, waiter);
    if (cb == NULL) {
        goto error;
    }
    t->handle = PyObject_CallMethodObjArgs(loop, st->str_call_later, delay,
                                           cb, NULL);
    Py_DECREF(cb);
    if (t->handle == NULL) {
        goto error;
    }
    return (PyObject *)t;
error:
    Py_DECREF(t);
    return NULL;
}

int
fw_release_timer_cancel(fw_state *st, PyObject *timer)
{
    return timeout_unschedule(st, Timeout_CAST(timer));
}

/* ---- Native deadlines for other C parts (gather(timeout=), ...).
 *
 * A deadline is a TimeoutObject with `fire`/`owner` set, in the loop's
 * heap like a timeout scope's: creating one is an allocation, a look-up of
 * the loop's scheduler (cached for the last loop) and a heap push; the
 * loop timer is only (re-)armed when the deadline is earlier than the armed
 * one.  Cancelling is a heap removal; the armed timer stays and, if it
 * fires with nothing due, re-arms for the next deadline.  A deadline that
 * has passed already goes into the heap too: the loop timer is re-armed at
 * it, so it fires in the loop's next timer processing, never inside the
 * call.  Loops whose timers we do not know get one call_at() handle per
 * deadline. */
PyObject *
fw_deadline_new(fw_state *st, PyObject *loop, double when, fw_deadline_fn fire,
                PyObject *owner)
{
    if (isnan(when)) {
        PyErr_SetString(PyExc_ValueError, "deadline must not be NaN");
        return NULL;
    }
    TimeoutObject *t = (TimeoutObject *)fw_timeout_new(st, Py_None);
    if (t == NULL) {
        return NULL;
    }
    t->fire = fire;
    t->owner = Py_NewRef(owner);
    t->native = 1;
    t->state = T_ENTERED;
    if (isfinite(when)) {
        Scheduler *s = sched_for(st, loop);
        if (s != NULL) {
            int r = sched_push(st, s, t, when);
            Py_DECREF(s);
            if (r < 0) {
                goto error;
            }
            return (PyObject *)t;
        }
        if (PyErr_Occurred()) {
            goto error;
        }
    }
    /* Unknown loop timers (or an infinite deadline): a handle of its own. */
    PyObject *cb = PyObject_GetAttr((PyObject *)t, st->str_on_timeout);
    PyObject *w = cb != NULL ? PyFloat_FromDouble(when) : NULL;
    if (w != NULL) {
        t->handle = PyObject_CallMethodObjArgs(loop, st->str_call_at, w, cb,
                                               NULL);
    }
    Py_XDECREF(cb);
    Py_XDECREF(w);
    if (t->handle == NULL) {
        goto error;
    }
    return (PyObject *)t;
error:
    t->fire = NULL;
    Py_CLEAR(t->owner);
    Py_DECREF(t);
    return NULL;
}

int
fw_deadline_cancel(fw_state *st, PyObject *deadline)
{
    TimeoutObject *t = Timeout_CAST(deadline);
    Py_INCREF(t);
    t->fire = NULL;
    t->state = T_EXITED;
    int r = timeout_unschedule(st, t);
    Py_CLEAR(t->owner);
    Py_DECREF(t);
    return r;
}

/* ---- Python-level methods */

static int
timeout_tp_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    fw_state *st = fw_state_from_type(Py_TYPE(op));
    PyObject *bound = fw_bind_call(st, "Timeout.__init__", op, args, kwds);
    if (bound == NULL) {
        return -1;
    }
    TimeoutObject *t = Timeout_CAST(op);
    /* As the stdlib's __init__: a fresh state; a handle of an earlier
     * life is forgotten, not cancelled. */
    t->state = T_CREATED;
    Py_CLEAR(t->handle);
    Py_CLEAR(t->task);
    Py_XSETREF(t->when, Py_NewRef(PyTuple_GET_ITEM(bound, 0)));
    Py_DECREF(bound);
    return 0;
}

static PyObject *
timeout_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    TimeoutObject *t = (TimeoutObject *)type->tp_alloc(type, 0);
    if (t == NULL) {
        return NULL;
    }
    timeout_init_fields(fw_state_from_type(type), t, Py_None);
    return (PyObject *)t;
}

static PyObject *
timeout_when(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    if (nargs != 0 || kwnames != NULL) {
        return fw_signature_error(fw_state_from_type(Py_TYPE(op)),
                                  "Timeout.when", op, args, nargs, kwnames);
    }
    return Py_NewRef(Timeout_CAST(op)->when);
}

static PyObject *
timeout_expired(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    if (nargs != 0 || kwnames != NULL) {
        return fw_signature_error(fw_state_from_type(Py_TYPE(op)),
                                  "Timeout.expired", op, args, nargs,
                                  kwnames);
    }
    int s = Timeout_CAST(op)->state;
    return PyBool_FromLong(s == T_EXPIRING || s == T_EXPIRED);
}

static PyObject *
timeout_reschedule_meth(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames)
{
    fw_state *st = fw_state_from_type(Py_TYPE(op));
    PyObject *when;
    PyObject *bound = NULL;
    if (nargs == 1 && kwnames == NULL) {
        when = args[0];
    }
    else {
        bound = fw_bind(st, "Timeout.reschedule", op, args, nargs, kwnames);
        if (bound == NULL) {
            return NULL;
        }
        when = PyTuple_GET_ITEM(bound, 0);
    }
    int r = timeout_reschedule(st, Timeout_CAST(op), when, NULL);
    Py_XDECREF(bound);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
timeout_on_timeout(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    fw_state *st = fw_state_from_type(Py_TYPE(op));
    if (timeout_fire(st, Timeout_CAST(op)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* __aenter__/__aexit__ are coroutines, as in the stdlib: nothing happens
 * until they are awaited, and an un-awaited one warns. */
static PyObject *
aenter_step(PyObject *state, PyObject *exc, PyObject **result)
{
    if (exc != NULL) {
        fw_err_restore(exc);
        return NULL;
    }
    fw_state *st = Timeout_CAST(state)->st;
    if (fw_timeout_enter(st, state) < 0) {
        return NULL;
    }
    *result = Py_NewRef(state);
    return NULL;
}

/* state: the Timeout (no exception) or (timeout, exc_type, exc_val) */
static PyObject *
aexit_step(PyObject *state, PyObject *exc, PyObject **result)
{
    if (exc != NULL) {
        fw_err_restore(exc);
        return NULL;
    }
    PyObject *t = state, *exc_type = Py_None, *exc_val = Py_None;
    if (PyTuple_Check(state)) {
        t = PyTuple_GET_ITEM(state, 0);
        exc_type = PyTuple_GET_ITEM(state, 1);
        exc_val = PyTuple_GET_ITEM(state, 2);
    }
    fw_state *st = Timeout_CAST(t)->st;
    if (timeout_exit(st, Timeout_CAST(t), exc_type, exc_val) < 0) {
        return NULL;
    }
    *result = Py_NewRef(Py_None);
    return NULL;
}

static const fw_coro_def aenter_def = {"Timeout.__aenter__", aenter_step};
static const fw_coro_def aexit_def = {"Timeout.__aexit__", aexit_step};

static PyObject *
timeout_aenter(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    fw_state *st = Timeout_CAST(op)->st;
    if (nargs != 0 || kwnames != NULL) {
        return fw_signature_error(st, "Timeout.__aenter__", op, args, nargs,
                                  kwnames);
    }
    return fw_coro_new(st, &aenter_def, op);
}

static PyObject *
timeout_aexit(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    fw_state *st = Timeout_CAST(op)->st;
    PyObject *bound = NULL;
    PyObject *exc_type, *exc_val;
    if (nargs == 3 && kwnames == NULL) {
        exc_type = args[0];
        exc_val = args[1];
    }
    else {
        bound = fw_bind(st, "Timeout.__aexit__", op, args, nargs, kwnames);
        if (bound == NULL) {
            return NULL;
        }
        exc_type = PyTuple_GET_ITEM(bound, 0);
        exc_val = PyTuple_GET_ITEM(bound, 1);
    }
    PyObject *res;
    if (exc_type == Py_None) {
        res = fw_coro_new(st, &aexit_def, op);
    }
    else {
        PyObject *state = PyTuple_Pack(3, op, exc_type, exc_val);
        res = state != NULL ? fw_coro_new(st, &aexit_def, state) : NULL;
        Py_XDECREF(state);
    }
    Py_XDECREF(bound);
    return res;
}

static PyObject *
timeout_repr(PyObject *op)
{
    TimeoutObject *t = Timeout_CAST(op);
    if (t->state != T_ENTERED) {
        return PyUnicode_FromFormat("<Timeout [%s]>", state_values[t->state]);
    }
    PyObject *when;
    if (t->when == Py_None) {
        when = Py_NewRef(Py_None);
    }
    else {
        fw_state *st = fw_state_from_type(Py_TYPE(op));
        PyObject *three = PyLong_FromLong(3);
        when = three != NULL ? PyObject_CallFunctionObjArgs(st->round,
                                                            t->when, three,
                                                            NULL)
                             : NULL;
        Py_XDECREF(three);
        if (when == NULL) {
            return NULL;
        }
    }
    PyObject *empty = PyUnicode_New(0, 0);
    PyObject *text = empty != NULL ? PyObject_Format(when, empty) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(when);
    if (text == NULL) {
        return NULL;
    }
    PyObject *res = PyUnicode_FromFormat("<Timeout [active] when=%U>", text);
    Py_DECREF(text);
    return res;
}

static int
timeout_traverse(PyObject *op, visitproc visit, void *arg)
{
    TimeoutObject *t = Timeout_CAST(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(t->when);
    Py_VISIT(t->task);
    Py_VISIT(t->cancelling);
    Py_VISIT(t->handle);
    Py_VISIT(t->waiter);
    Py_VISIT(t->owner);
    Py_VISIT(t->sched);
    Py_VISIT(t->dict);
    return 0;
}

static int
timeout_clear(PyObject *op)
{
    TimeoutObject *t = Timeout_CAST(op);
    if (t->sched != NULL) {
        heap_remove(t);
    }
    Py_CLEAR(t->when);
    Py_CLEAR(t->task);
    Py_CLEAR(t->cancelling);
    Py_CLEAR(t->handle);
    Py_CLEAR(t->waiter);
    t->fire = NULL;
    Py_CLEAR(t->owner);
    Py_CLEAR(t->dict);
    return 0;
}

static PyMethodDef timeout_methods[] = {
    {"when", (PyCFunction)(void (*)(void))timeout_when,
     METH_FASTCALL | METH_KEYWORDS,
     "when($self, /)\n--\n\nReturn the current deadline."},
    {"reschedule", (PyCFunction)(void (*)(void))timeout_reschedule_meth,
     METH_FASTCALL | METH_KEYWORDS,
     "reschedule($self, /, when)\n--\n\nReschedule the timeout."},
    {"expired", (PyCFunction)(void (*)(void))timeout_expired,
     METH_FASTCALL | METH_KEYWORDS,
     "expired($self, /)\n--\n\nIs timeout expired during execution?"},
    {"__aenter__", (PyCFunction)(void (*)(void))timeout_aenter,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"__aexit__", (PyCFunction)(void (*)(void))timeout_aexit,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_on_timeout", timeout_on_timeout, METH_NOARGS, NULL},
    {NULL},
};

static PyMemberDef timeout_members[] = {
    {"__dictoffset__", Py_T_PYSSIZET, offsetof(TimeoutObject, dict),
     Py_READONLY},
    {"__weaklistoffset__", Py_T_PYSSIZET,
     offsetof(TimeoutObject, weakreflist), Py_READONLY},
    {NULL},
};

static PyGetSetDef timeout_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL,
     NULL},
    {NULL},
};

static void
timeout_dealloc(PyObject *op)
{
    TimeoutObject *t = Timeout_CAST(op);
    PyTypeObject *tp = Py_TYPE(op);
    fw_state *st = t->st;
    PyObject_GC_UnTrack(op);
    if (t->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    (void)timeout_clear(op);
    /* The exact type's memory is kept for fw_timeout_new while the module
     * state is alive (module_clear empties the list and clears
     * TimeoutType first, so nothing is kept after it). */
    if (tp == st->TimeoutType && st->timeout_nfree < FW_TIMEOUT_FREELIST) {
        st->timeout_free[st->timeout_nfree++] = op;
    }
    else {
        tp->tp_free(op);
    }
    Py_DECREF(tp);
}

void
fw_timeout_free_list_clear(fw_state *st)
{
    while (st->timeout_nfree > 0) {
        PyObject_GC_Del(st->timeout_free[--st->timeout_nfree]);
    }
}

PyDoc_STRVAR(timeout_doc,
"Timeout(when)\n--\n\n"
"Asynchronous context manager for cancelling overdue coroutines.\n\n"
"Use `timeout()` or `timeout_at()` rather than instantiating this class "
"directly.");

static PyType_Slot timeout_slots[] = {
    {Py_tp_doc, (void *)timeout_doc},
    {Py_tp_repr, timeout_repr},
    {Py_tp_new, timeout_tp_new},
    {Py_tp_init, timeout_tp_init},
    {Py_tp_traverse, timeout_traverse},
    {Py_tp_clear, timeout_clear},
    {Py_tp_dealloc, timeout_dealloc},
    {Py_tp_methods, timeout_methods},
    {Py_tp_members, timeout_members},
    {Py_tp_getset, timeout_getset},
    {0, NULL},
};

static PyType_Spec timeout_spec = {
    .name = "fastwait.Timeout",
    .basicsize = sizeof(TimeoutObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = timeout_slots,
};

/* ------------------------------------------------------------------ */
/* timeout(), timeout_at() */

/* loop.time() + delay: a new reference or NULL. */
static PyObject *
loop_time_plus(fw_state *st, PyObject *loop, PyObject *delay)
{
    double now_d;
    PyObject *now;
    int in_c = loop_clock(st, loop, &now_d, &now);
    if (in_c < 0) {
        return NULL;
    }
    if (in_c > 0) {
        /* float.__add__ with a float or an int computed here, as it does;
         * anything else (or an int too large for a double) goes through
         * the float object. */
        if (PyFloat_CheckExact(delay)) {
            return PyFloat_FromDouble(now_d + PyFloat_AS_DOUBLE(delay));
        }
        if (PyLong_CheckExact(delay)) {
            double d = PyLong_AsDouble(delay);
            if (!(d == -1.0 && PyErr_Occurred())) {
                return PyFloat_FromDouble(now_d + d);
            }
            PyErr_Clear();
        }
        if ((now = PyFloat_FromDouble(now_d)) == NULL) {
            return NULL;
        }
    }
    PyObject *when = PyNumber_Add(now, delay);
    Py_DECREF(now);
    return when;
}

PyObject *
fw_timeout_for_delay(fw_state *st, PyObject *delay)
{
    PyObject *loop = PyObject_CallNoArgs(st->get_running_loop);
    if (loop == NULL) {
        return NULL;
    }
    PyObject *when = delay == Py_None ? Py_NewRef(Py_None)
                                      : loop_time_plus(st, loop, delay);
    Py_DECREF(loop);
    if (when == NULL) {
        return NULL;
    }
    PyObject *t = fw_timeout_new(st, when);
    Py_DECREF(when);
    return t;
}

static PyObject *
fw_timeout(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    fw_state *st = fw_get_state(module);
    if (nargs == 1 && kwnames == NULL) {
        return fw_timeout_for_delay(st, args[0]);
    }
    PyObject *bound = fw_bind(st, "timeout", NULL, args, nargs, kwnames);
    if (bound == NULL) {
        return NULL;
    }
    PyObject *t = fw_timeout_for_delay(st, PyTuple_GET_ITEM(bound, 0));
    Py_DECREF(bound);
    return t;
}

static PyObject *
fw_timeout_at(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    fw_state *st = fw_get_state(module);
    if (nargs == 1 && kwnames == NULL) {
        return fw_timeout_new(st, args[0]);
    }
    PyObject *bound = fw_bind(st, "timeout_at", NULL, args, nargs, kwnames);
    if (bound == NULL) {
        return NULL;
    }
    PyObject *t = fw_timeout_new(st, PyTuple_GET_ITEM(bound, 0));
    Py_DECREF(bound);
    return t;
}

PyDoc_STRVAR(timeout_fn_doc,
"timeout($module, /, delay)\n--\n\n"
"Timeout async context manager, like asyncio.timeout().\n\n"
"    async with fastwait.timeout(10):  # 10 seconds timeout\n"
"        await long_running_task()\n\n"
"delay - value in seconds or None to disable timeout logic.  The body is\n"
"interrupted by CancelledError; the top-most affected timeout() context\n"
"manager converts it into TimeoutError.  Deadlines are kept natively,\n"
"behind one loop timer shared by every scope on the loop.");

PyDoc_STRVAR(timeout_at_doc,
"timeout_at($module, /, when)\n--\n\n"
"Schedule the timeout at absolute time, like asyncio.timeout_at().\n\n"
"`when` is in the same clock system as loop.time(), or None to disable\n"
"timeout logic.");

static PyMethodDef timeout_functions[] = {
    {"timeout", (PyCFunction)(void (*)(void))fw_timeout,
     METH_FASTCALL | METH_KEYWORDS, timeout_fn_doc},
    {"timeout_at", (PyCFunction)(void (*)(void))fw_timeout_at,
     METH_FASTCALL | METH_KEYWORDS, timeout_at_doc},
    {NULL},
};

/* Are st->base_time and st->time_monotonic, as found at import, asyncio's
 * own `def time(self): return time.monotonic()` and the time module's
 * builtin monotonic?  -1 error, 0/1. */
static int
clock_is_original(fw_state *st)
{
    PyObject *f = st->base_time, *m = st->time_monotonic;
    if (!PyFunction_Check(f) ||
        PyFunction_GET_GLOBALS(f) != st->base_events_dict ||
        !PyCFunction_Check(m) || PyCFunction_GET_SELF(m) != st->time_module ||
        PyDict_GetItemWithError(st->base_events_dict, st->str_time) !=
            st->time_module) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *qualname = PyObject_GetAttrString(f, "__qualname__");
    PyObject *names = PyObject_GetAttrString(PyFunction_GET_CODE(f),
                                             "co_names");
    PyObject *mname = PyObject_GetAttrString(m, "__name__");
    int ok = qualname != NULL && names != NULL && mname != NULL;
    if (ok) {
        ok = PyUnicode_Check(qualname) &&
             PyUnicode_CompareWithASCIIString(qualname,
                                              "BaseEventLoop.time") == 0 &&
             PyTuple_Check(names) && PyTuple_GET_SIZE(names) == 2 &&
             PyTuple_GET_ITEM(names, 0) == st->str_time &&
             PyUnicode_Check(PyTuple_GET_ITEM(names, 1)) &&
             PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(names, 1),
                                              "monotonic") == 0 &&
             PyUnicode_Check(mname) &&
             PyUnicode_CompareWithASCIIString(mname, "monotonic") == 0;
    }
    Py_XDECREF(qualname);
    Py_XDECREF(names);
    Py_XDECREF(mname);
    return PyErr_Occurred() ? -1 : ok;
}

int
fw_timeout_init(PyObject *module, fw_state *st)
{
    st->SchedulerType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &sched_spec, NULL);
    st->ReleaseType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &release_spec, NULL);
    st->TimeoutType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &timeout_spec, NULL);
    if (st->SchedulerType == NULL || st->ReleaseType == NULL ||
        st->TimeoutType == NULL) {
        return -1;
    }
    PyObject *task = (PyObject *)st->TaskType;
    if ((st->task_cancel = PyObject_GetAttr(task, st->str_cancel)) == NULL ||
        (st->task_cancelling = PyObject_GetAttr(task, st->str_cancelling)) ==
            NULL ||
        (st->task_uncancel = PyObject_GetAttr(task, st->str_uncancel)) ==
            NULL ||
        (st->schedulers = PyDict_New()) == NULL ||
        (st->timer_loop_types = PyDict_New()) == NULL) {
        return -1;
    }
    /* fw_loop_time: BaseEventLoop.time, its code and what it reads. */
    PyObject *base_events = PyImport_ImportModule("asyncio.base_events");
    PyObject *base_loop = base_events != NULL
                              ? PyObject_GetAttrString(base_events,
                                                       "BaseEventLoop")
                              : NULL;
    if (base_loop != NULL) {
        st->base_time = PyObject_GetAttr(base_loop, st->str_time);
        Py_DECREF(base_loop);
    }
    if (base_events != NULL) {
        st->base_events_dict = Py_XNewRef(PyModule_GetDict(base_events));
        Py_DECREF(base_events);
    }
    if (st->base_time == NULL || st->base_events_dict == NULL ||
        (st->time_module = PyImport_ImportModule("time")) == NULL ||
        (st->time_dict = Py_XNewRef(PyModule_GetDict(st->time_module))) ==
            NULL ||
        (st->str_monotonic = PyUnicode_InternFromString("monotonic")) ==
            NULL ||
        (st->time_monotonic = PyObject_GetAttr(st->time_module,
                                               st->str_monotonic)) == NULL) {
        return -1;
    }
    /* Imported while something was patched (BaseEventLoop.time, or
     * time.monotonic): never read in C then (None matches nothing). */
    int ok = clock_is_original(st);
    if (ok < 0) {
        return -1;
    }
    if (ok) {
        st->base_time_code = Py_NewRef(PyFunction_GET_CODE(st->base_time));
    }
    else {
        Py_SETREF(st->base_time, Py_NewRef(Py_None));
        Py_SETREF(st->time_monotonic, Py_NewRef(Py_None));
    }
    st->timeout_splices_context = Py_Version >= 0x030D0000;
    st->timer_end_ulp = Py_Version >= 0x030F0000;
    /* 3.11-3.13: @typing.final marks the class (it does not prevent
     * subclassing); 3.14 dropped the decorator. */
    if (Py_Version < 0x030E0000) {
        if (PyDict_SetItemString(st->TimeoutType->tp_dict, "__final__",
                                 Py_True) < 0) {
            return -1;
        }
        PyType_Modified(st->TimeoutType);
    }
    if (PyModule_AddType(module, st->TimeoutType) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, timeout_functions);
}

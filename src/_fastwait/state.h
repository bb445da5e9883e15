/* Module state shared by every part of fastwait._fastwait.
 *
 * One struct per module object (multi-phase init, PEP 489): the asyncio
 * objects we talk to, looked up once at import; our own heap types; interned
 * method names and cached keyword-name tuples.  Reach it from the module
 * (fw_get_state), from a method's defining class (PyType_GetModuleState) or
 * from an instance of one of our types (fw_state_from_type).
 */
#ifndef FASTWAIT_STATE_H
#define FASTWAIT_STATE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

/* PyMemberDef's type and flag names before 3.12 (Py_T_* and Py_READONLY
 * are the public spellings from 3.12 on). */
#if PY_VERSION_HEX < 0x030C0000
#  include <structmember.h>
#  define Py_T_PYSSIZET T_PYSSIZET
#  define Py_T_OBJECT_EX T_OBJECT_EX
#  define Py_READONLY READONLY
#endif

/* Interned attribute and method names.  X(field, "text"). */
#define FW_NAMES(X)                                                     \
    X(str_add_done_callback, "add_done_callback")                       \
    X(str_asyncio_future_blocking, "_asyncio_future_blocking")          \
    X(str_call_soon, "call_soon")                                       \
    X(str_tg_abort, "_abort")                                           \
    X(str_tg_is_base_error, "_is_base_error")                           \
    X(str_tg_on_task_done, "_on_task_done")                             \
    X(str_callbacks, "_callbacks")                                      \
    X(str_cancel, "cancel")                                             \
    X(str_cancel_message, "_cancel_message")                            \
    X(str_cancelled, "cancelled")                                       \
    X(str_close, "close")                                               \
    X(str_call_later, "call_later")                                     \
    X(str_remove_done_callback, "remove_done_callback")                 \
    X(str_create_future, "create_future")                               \
    X(str_create_task, "create_task")                                   \
    X(str_done, "done")                                                 \
    X(str_exception, "exception")                                       \
    X(str_get_loop, "get_loop")                                         \
    X(str_get_task_factory, "get_task_factory")                         \
    X(str_task_factory_attr, "_task_factory")                           \
    X(str_closed_attr, "_closed")                                       \
    X(str_name, "name")                                                 \
    X(str_context, "context")                                           \
    X(str_loop_attr, "_loop")                                           \
    X(str_log_destroy_pending, "_log_destroy_pending")                  \
    X(str_make_cancelled_error, "_make_cancelled_error")                \
    X(str_must_cancel, "_must_cancel")                                  \
    X(str_result, "result")                                             \
    X(str_set_exception, "set_exception")                               \
    X(str_set_result, "set_result")                                     \
    X(str_throw, "throw")                                               \
    X(str_time, "time")                                                 \
    X(str_call_at, "call_at")                                           \
    X(str_cancelling, "cancelling")                                     \
    X(str_uncancel, "uncancel")                                         \
    X(str_exceptions, "exceptions")                                     \
    X(str_clock_resolution, "_clock_resolution")                        \
    X(str_on_timeout, "_on_timeout")                                    \
    X(str_return_exceptions, "return_exceptions")                       \
    X(str_limit, "limit")                                               \
    X(str_timeout, "timeout")                                           \
    X(str_eager, "eager")                                               \

/* Methods of asyncio's C Future and Task that the hot paths call.  For
 * instances of exactly those types (and our _GatheringFuture) we call the
 * method descriptor directly, skipping the attribute lookup. */
typedef enum {
    FW_DONE,
    FW_CANCELLED,
    FW_EXCEPTION,
    FW_RESULT,
    FW_GET_LOOP,
    FW_ADD_DONE_CALLBACK,
    FW_REMOVE_DONE_CALLBACK,
    FW_NMETHODS
} fw_method;

typedef struct {
    /* Our heap types. */
    PyTypeObject *ChildType;           /* child.c: coroutine wrapper */
    PyTypeObject *GatheringFutureType; /* gather.c */
    PyTypeObject *GatherCoreType;      /* gather.c */
    PyTypeObject *CoroType;            /* coro.c: native coroutine objects */
    PyTypeObject *WaitStateType;       /* wait.c */
    PyTypeObject *CompletionQueueType; /* completion.c */
    PyTypeObject *CompletionWaitType;  /* completion.c */
    PyTypeObject *AsCompletedGenType;  /* as_completed.c, 3.11/3.12 */
    PyTypeObject *AsCompletedIterType; /* as_completed.c, 3.13+ */
    PyTypeObject *AsCompletedWaitType; /* as_completed.c */
    PyTypeObject *TimeoutType;         /* timeout.c */
    PyTypeObject *SchedulerType;       /* timeout.c: a loop's deadlines */
    PyTypeObject *ReleaseType;         /* timeout.c: _release_waiter */
    PyTypeObject *WaitForStateType;    /* wait_for.c */
    PyTypeObject *ShieldCallbackType;  /* shield.c */
    PyTypeObject *TaskGroupType;         /* taskgroup.c */
    PyTypeObject *TaskGroupCallbackType; /* taskgroup.c */
    PyTypeObject *TaskGroupSlotWrapperType; /* taskgroup.c: limit=N */
    PyTypeObject *RaceStateType;         /* race.c */

    /* asyncio objects, looked up once at import. */
    PyTypeObject *FutureType;  /* asyncio.Future (the C one) */
    PyTypeObject *TaskType;    /* asyncio.Task (the C one) */
    PyObject *CancelledError;
    PyObject *get_event_loop;    /* events.get_event_loop / _get_event_loop */
    PyObject *get_running_loop_or_none; /* events._get_running_loop */
    PyObject *ensure_future;     /* tasks.ensure_future (3.11: _ensure_future) */
    PyObject *eager_task_factory; /* tasks.eager_task_factory or None */
    PyObject *get_running_loop;  /* events.get_running_loop */
    PyObject *iscoroutine;       /* coroutines.iscoroutine */
    PyObject *current_task;      /* asyncio.tasks.current_task, looked up
                                    at each call (fw_late_bound) */
    PyObject *tasks_dict;        /* asyncio.tasks.__dict__ (tasks.Task is
                                    read there at each use) */
    PyObject *str_Task;          /* "Task" */
    PyObject *QueueEmpty;        /* asyncio.QueueEmpty */
    PyObject *isawaitable;       /* inspect.isawaitable */
    PyObject *warn_unawaited;    /* warnings._warn_unawaited_coroutine */
    PyObject *origin_depth;      /* sys.get_coroutine_origin_tracking_depth */
    PyObject *FIRST_COMPLETED, *FIRST_EXCEPTION, *ALL_COMPLETED;
    PyObject *base_create_task;  /* base_events.BaseEventLoop.create_task */
    PyObject *base_get_task_factory; /* BaseEventLoop.get_task_factory */
    PyObject *loop_type_cache;   /* dict: loop type -> bool (create_task known) */
    PyObject *empty_context;     /* contextvars.Context() for our callbacks */
    PyObject *signatures;        /* dict: Python functions with our
                                    signatures, for argument errors */
    PyObject *cancel_and_wait;   /* tasks._cancel_and_wait's logic */
    PyObject *base_call_at;      /* base_events.BaseEventLoop.call_at */
    PyObject *round;             /* builtins.round */
    PyObject *ExceptionGroup;    /* builtins.ExceptionGroup */
    PyObject *task_cancel, *task_cancelling, *task_uncancel; /* Task's */
    PyObject *schedulers;        /* dict: id(loop) -> address of its
                                    deadline scheduler (no references) */
    PyObject *timer_loop_types;  /* dict: loop type -> "asyncio" |
                                    "uvloop" | "" (timers unknown) */
    struct Scheduler *last_scheduler; /* borrowed; cleared by its dealloc */
    /* fw_loop_time (timeout.c): what BaseEventLoop.time() reads, to read
     * the clock in C while that is provably what loop.time() returns. */
    PyObject *base_time;       /* base_events.BaseEventLoop.time */
    PyObject *base_time_code;  /* its __code__ */
    PyObject *base_events_dict; /* asyncio.base_events.__dict__ */
    PyObject *time_module;     /* the `time` module */
    PyObject *time_dict;       /* its __dict__ */
    PyObject *time_monotonic;  /* time.monotonic */
    PyObject *str_monotonic;   /* "monotonic" */
    PyObject *clock_type;      /* the last loop type seen, and whether */
    int clock_type_base;       /* its `time` was BaseEventLoop.time */
    /* timeout.c: the memory of dead Timeout objects (exact type), reused
     * by fw_timeout_new: a gather(timeout=) call or a timeout() scope
     * makes one and drops it.  Untracked, no references, no type
     * reference; freed by fw_timeout_free_list_clear (module_clear). */
#define FW_TIMEOUT_FREELIST 16
    PyObject *timeout_free[FW_TIMEOUT_FREELIST];
    int timeout_nfree;
    PyObject *shield_inner_source; /* shield.c: functions made from the code */
    PyObject *shield_outer_source; /* of the stdlib's closures, or None */
    /* tp_richcompare of object, builtin functions and bound methods:
     * comparisons by identity that call no Python code (shield.c). */
    void *richcompare_object, *richcompare_cfunction, *richcompare_method;

    PyObject *future_methods[FW_NMETHODS]; /* descriptors of Future */
    PyObject *task_methods[FW_NMETHODS];   /* descriptors of Task */
    PyObject *method_names[FW_NMETHODS];   /* borrowed: the str_* below */

    /* Keyword-name tuples for vectorcall. */
    PyObject *kw_msg;     /* ("msg",) */
    PyObject *kw_context; /* ("context",) */
    PyObject *kw_loop;    /* ("loop",) */
    PyObject *kw_name;    /* ("name",) */
    PyObject *kw_name_context; /* ("name", "context") */
    PyObject *kw_loop_name_context; /* ("loop", "name", "context") */
    PyObject *kw_loop_context_eager; /* ("loop", "context", "eager_start"),
                                        3.12+ (eager.c) */
    PyObject *set_task_name;   /* tasks._set_task_name (3.11/3.12) or None */

#define FW_NAME_FIELD(field, text) PyObject *field;
    FW_NAMES(FW_NAME_FIELD)
#undef FW_NAME_FIELD

    /* Behaviour switches, decided once at import from Py_Version. */
    int optimize; /* sys.flags.optimize: `assert` statements are off */
    int as_completed_eager;   /* 3.13+: _AsCompletedIterator, set up at
                                 the call (gh-77714) */
    int gather_done_shortcut; /* 3.12+: children done at creation are
                                 processed synchronously (gh-104144) */
    int timeout_splices_context; /* 3.13+: Timeout puts a TimeoutError
                                    into the context chain (gh-96037) */
    int wait_for_own_task;    /* 3.11: wait_for runs its awaitable in a
                                 task of its own */

    /* 3.14+: the call graph (asyncio.capture_call_graph).  The stdlib's
     * primitives record "fut is awaited by task" edges with
     * futures.future_add_to_awaited_by / future_discard_from_awaited_by;
     * both are NULL before 3.14 (graph_edges 0). */
    int graph_edges;
    PyObject *awaited_by_add;     /* futures.future_add_to_awaited_by and */
    PyObject *awaited_by_discard; /* future_discard_from_awaited_by, each
                                     looked up at every call (fw_late_bound) */
    PyObject *awaited_by_add_c;   /* _asyncio's own two */
    PyObject *awaited_by_discard_c;
    PyObject *futures_dict;       /* asyncio.futures.__dict__ */
    PyObject *str_awaited_by_add, *str_awaited_by_discard;
    PyObject *shield_clear_source; /* shield.c: _clear_awaited_by_callback's
                                      code as a function, or None */
    int shield_marks_retrieved; /* 3.11-3.13: shield's inner callback marks
                                   the inner's exception retrieved once the
                                   outer is cancelled (3.14: it does not) */
    int as_completed_requeue; /* 3.14+: _wait_for_one puts back _todo_left
                                 when its get() fails (cancelled) */
    int timer_end_ulp;        /* 3.15+: the loop's end_time adds at least
                                 one ulp of the clock (timeout.c) */
    /* taskgroup.c: TaskGroup's switches, decided once in
     * fw_taskgroup_init from Py_Version (patch releases included). */
    int tg_v313;         /* 3.13.0+: uncancel() after the wait, coroutine
                            closed on refusal, CancelledError subclasses */
    int tg_aexit_clears; /* 3.12.8+/3.13.1+: __aexit__ clears _parent_task,
                            _errors, _base_error when it ends (gh-124958) */
    int tg_always_add;   /* 3.12.9+/3.13.2+: a child done inside
                            create_task is added and called back like any
                            other (gh-128550, gh-128588) */
    int tg_v314;         /* 3.14+: create_task(coro, **kwargs), call-graph
                            edges child -> parent */
    int tg_v315;         /* 3.15+: cancel(), gh-155433, gh-155418, a lone
                            GeneratorExit re-raised, __aexit__ -> True */
    PyCFunction tg_future_done;      /* asyncio.Future.done's C function
                                        (METH_NOARGS), or NULL */
} fw_state;

extern PyModuleDef fw_module_def;

static inline fw_state *
fw_get_state(PyObject *module)
{
    return (fw_state *)PyModule_GetState(module);
}

/* State from an instance of (a subclass of) one of our heap types. */
static inline fw_state *
fw_state_from_type(PyTypeObject *tp)
{
    PyObject *mod = PyType_GetModuleByDef(tp, &fw_module_def);
    assert(mod != NULL);
    return fw_get_state(mod);
}

/* Parts of the module: each adds its types/functions to the module. */
/* A callable that looks module.name up at each call and calls it, for the
 * globals the stdlib's primitives read at call time (module.c). */
PyObject *fw_late_bound(const char *module, const char *name);

int fw_child_init(PyObject *module, fw_state *st);
int fw_gather_init(PyObject *module, fw_state *st);
int fw_coro_init(PyObject *module, fw_state *st);
int fw_wait_init(PyObject *module, fw_state *st);
int fw_completion_init(PyObject *module, fw_state *st);
int fw_as_completed_init(PyObject *module, fw_state *st);
int fw_timeout_init(PyObject *module, fw_state *st);
int fw_wait_for_init(PyObject *module, fw_state *st);
int fw_shield_init(PyObject *module, fw_state *st);

/* ---- timeout.c, for wait_for.c */
/* Timeout(when); timeout(delay) */
PyObject *fw_timeout_new(fw_state *st, PyObject *when);
PyObject *fw_timeout_for_delay(fw_state *st, PyObject *delay);
/* What awaiting __aenter__() does; -1 error. */
int fw_timeout_enter(fw_state *st, PyObject *timeout);
/* What awaiting __aexit__() does after the body returned (exc NULL) or
 * raised exc: 0, or -1 with the exception to raise instead. */
int fw_timeout_exit(fw_state *st, PyObject *timeout, PyObject *exc);
/* loop.call_later(delay, _release_waiter, waiter), on the shared loop
 * timer where possible: a timer object (new reference) or NULL. */
PyObject *fw_release_timer(fw_state *st, PyObject *loop, PyObject *delay,
                           PyObject *waiter);
int fw_release_timer_cancel(fw_state *st, PyObject *timer);
/* tasks._release_waiter(waiter): set its result None unless done.  1 if it
 * was released, 0 if it was done already, -1 error. */
int fw_release_waiter(fw_state *st, PyObject *waiter);
/* functools.partial(_release_waiter, waiter) as a C callable. */
PyObject *fw_release_waiter_new(fw_state *st, PyObject *waiter);
int fw_taskgroup_init(PyObject *module, fw_state *st);
int fw_race_init(PyObject *module, fw_state *st);

/* ---- timeout.c: native deadlines on the loop's shared deadline heap (one
 * loop timer per loop, no TimerHandle per deadline).
 *
 * fw_deadline_new(st, loop, when, fire, owner): at loop time `when` (a
 * double; passed already: in the loop's next timer processing, never
 * inside the call; +inf: never), call fire(owner) once, from the loop
 * timer (an error it returns goes to the loop's exception handler).  The
 * deadline holds a strong reference to `owner` until it fires or is
 * cancelled.  A new reference, or NULL with an error.
 * fw_deadline_cancel(st, deadline): it will not fire (fired or cancelled
 * already: nothing); the owner is released.  -1 error (only for loops
 * whose timers we do not know, where a handle is cancelled). */
typedef int (*fw_deadline_fn)(PyObject *owner);
PyObject *fw_deadline_new(fw_state *st, PyObject *loop, double when,
                          fw_deadline_fn fire, PyObject *owner);
int fw_deadline_cancel(fw_state *st, PyObject *deadline);

/* loop.time() as a double (a result that is not a float is converted as
 * PyFloat_AsDouble does).  Read in C, without calling the method, while
 * that provably gives the same value: loop.time is asyncio's
 * BaseEventLoop.time bound to the loop and what it calls is still
 * time.monotonic.  0, or -1 with an error. */
int fw_loop_time(fw_state *st, PyObject *loop, double *now);
/* Free the memory kept for reuse by fw_timeout_new (module_clear). */
void fw_timeout_free_list_clear(fw_state *st);

/* ---- coro.c: native coroutine objects.
 *
 * wait(), and later TaskGroup.__aenter__/__aexit__, Timeout's, wait_for()
 * and as_completed()'s awaitables, are coroutines in the stdlib.  In C they
 * are FwCoro objects: awaitable, driven by send/throw/close and am_send,
 * accepted by asyncio.create_task() and asyncio.iscoroutine(), with the
 * "never awaited" warning.  A primitive supplies a state object and a step
 * function; the FwCoro does the coroutine protocol.
 *
 * step(state, exc, &result) is called when the coroutine starts (exc NULL)
 * and each time what it awaited finished (exc NULL: it returned; otherwise
 * the exception it raised, a reference that step takes over -- also
 * GeneratorExit from close() and whatever throw() brings).  It returns
 *   - a new reference to an awaitable to wait for next, or
 *   - NULL with *result set (new reference): the coroutine returns it, or
 *   - NULL with *result NULL and an exception set: the coroutine raises. */
typedef PyObject *(*fw_step_fn)(PyObject *state, PyObject *exc,
                                PyObject **result);

/* A step that also wants what the last await returned: `value` (owned,
 * or NULL when it raised or on the first step). */
typedef PyObject *(*fw_vstep_fn)(PyObject *state, PyObject *value,
                                 PyObject *exc, PyObject **result);

typedef struct {
    const char *name; /* __qualname__, e.g. "wait" or "Timeout.__aenter__";
                         __name__ is its last component */
    fw_step_fn step;
    fw_vstep_fn vstep; /* used instead of `step` when set */
    /* Optional: called (no error set, none may be raised) when the
     * coroutine is closed or thrown into before its first step, so the
     * state can release what it holds for that step (race() closes the
     * coroutines it was given). */
    void (*discard)(PyObject *state);
} fw_coro_def;

PyObject *fw_coro_new(fw_state *st, const fw_coro_def *def, PyObject *state);

/* The iterator `await aw` drives (coroutines are sent to directly), or
 * NULL with the TypeError `await` raises. */
PyObject *fw_get_awaitable_iter(PyObject *aw);

/* The exception that throw(typ[, val[, tb]]) raises, built as generators
 * build it (with 3.12+'s DeprecationWarning for the three-argument form):
 * a new reference, or NULL with an error. */
PyObject *fw_make_thrown(PyObject *const *args, Py_ssize_t nargs);

/* ---- forward.c: what the coroutine-protocol types share.
 *
 * FwCoro and the two coroutine wrappers (child.c's CoroutineWrapper,
 * taskgroup.c's TaskGroupSlotWrapper) make send()/__next__ from their
 * am_send and are their own __await__ iterator.  A wrapper runs a real
 * coroutine inside a Task: its struct begins with FW_WRAPPER_HEAD, and it
 * forwards introspection, repr and throw() to the coroutine here; only
 * what it does around a step is its own. */
#define FW_WRAPPER_HEAD                                                    \
    PyObject_HEAD                                                          \
    PyObject *coro; /* the wrapped coroutine; NULL once cleared */

typedef struct {
    FW_WRAPPER_HEAD
} fw_wrapper;

/* The flags of all of them: created only by fastwait itself. */
#define FW_CORO_TYPE_FLAGS                                                 \
    (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |  \
     Py_TPFLAGS_DISALLOW_INSTANTIATION)

/* A wrapper's coroutine ended: it returned `value`, or raised (value
 * NULL; the error is set and stays set).  Called again afterwards (a
 * finished coroutine thrown into raises), it does nothing. */
typedef void (*fw_outcome_fn)(PyObject *wrapper, PyObject *value);

/* The PyType_Slot entries the wrappers share (a slot list's items). */
#define FW_WRAPPER_SLOTS                                                   \
    {Py_tp_repr, fw_wrapper_repr}, {Py_tp_dealloc, fw_gc_dealloc},         \
        {Py_tp_iter, fw_self_await}, {Py_tp_iternext, fw_coro_iternext},   \
        {Py_tp_getset, fw_wrapper_getset}, {Py_am_await, fw_self_await}

/* send(arg) and __next__ through the type's am_send; am_send's outcome
 * as send()/throw() return it (StopIteration(value) for PYGEN_RETURN);
 * __await__/__iter__: self. */
PyObject *fw_coro_send(PyObject *op, PyObject *arg);
PyObject *fw_coro_iternext(PyObject *op);
PyObject *fw_send_result(PySendResult r, PyObject *result);
PyObject *fw_self_await(PyObject *op);
/* throw()'s argument count, in the coroutine's words.  -1 error. */
int fw_check_throw_nargs(Py_ssize_t nargs);
/* The type made from `spec` (its getset's cr_state taken out before 3.15,
 * whose coroutines have none) and registered as a Coroutine. */
PyTypeObject *fw_coro_type_new(PyObject *module, PyType_Spec *spec);

/* RuntimeError once the wrapper was cleared (gc): -1. */
int fw_wrapper_check(PyObject *wrapper);
/* One step forwarded to the coroutine; `done` hears of its end.  Inline:
 * every step of a wrapped child's Task comes through here. */
static inline PySendResult
fw_wrapper_send(PyObject *wrapper, PyObject *arg, PyObject **presult,
                fw_outcome_fn done)
{
    PySendResult r = PyIter_Send(((fw_wrapper *)wrapper)->coro, arg,
                                 presult);
    if (r != PYGEN_NEXT) {
        done(wrapper, r == PYGEN_RETURN ? *presult : NULL);
    }
    return r;
}
/* coro.throw(*args) (nargs checked already); when it raises, `done` hears
 * of the end (a StopIteration: the coroutine returned its value). */
PyObject *fw_wrapper_throw(PyObject *wrapper, PyObject *const *args,
                           Py_ssize_t nargs, fw_outcome_fn done);
/* coro.close() */
PyObject *fw_wrapper_close_coro(PyObject *wrapper);
/* The coroutine's repr. */
PyObject *fw_wrapper_repr(PyObject *wrapper);
/* __name__, __qualname__, cr_* forwarded; __wrapped__, the coroutine. */
extern PyGetSetDef fw_wrapper_getset[];

/* ---- child.c: the coroutine wrapper every "fastwait creates the task"
 * primitive runs its children in.  It forwards send/throw/close to the real
 * coroutine and calls `finish` the moment the coroutine returns or raises,
 * inside the child task's own step (no done-callback, no extra loop
 * iteration).  `value` is the returned object, or NULL when the coroutine
 * raised; `exc` (borrowed) is then the exception it raised.  No error is
 * set while `finish` runs: the wrapper holds the coroutine's exception and
 * puts it back afterwards. */
typedef int (*fw_finish_fn)(PyObject *owner, Py_ssize_t index,
                            PyObject *value, PyObject *exc);

PyObject *fw_child_new(fw_state *st, PyObject *coro, PyObject *owner,
                       Py_ssize_t index, fw_finish_fn finish);
/* True once the wrapped coroutine has returned or raised. */
int fw_child_finished(PyObject *child);
/* Detach the owner: `finish` will not be called any more. */
void fw_child_detach(PyObject *child);
/* A wrapper for a coroutine whose first step already ran and yielded
 * `first` (a reference this call takes over, also on failure): the
 * wrapper's first send(None) returns it; a throw() before that is the Task
 * cancelled while waiting on it (child.c, child_throw_first). */
PyObject *fw_child_new_started(fw_state *st, PyObject *coro, PyObject *owner,
                               Py_ssize_t index, fw_finish_fn finish,
                               PyObject *first);

/* ---- eager.c: starting a coroutine inside a call (gather(eager=True)). */
#define FW_HAVE_EAGER_START 1

/* Run coro's first step now, in a copy of base_ctx (a contextvars.Context;
 * NULL: a copy of the current context), with that copy entered, through
 * the send protocol (PyIter_Send: any coroutine asyncio.iscoroutine()
 * accepts).  current_task() during the step is the caller's task.
 *   0: finished in its first step: *value (new ref) when it returned, else
 *      *exc (new ref) the exception it raised (CancelledError included).
 *   1: suspended: *task (new ref) is the Task created by
 *      loop.create_task(wrapper, context=<the copy>) -- through the loop's
 *      create_task so task factories (eager_task_factory included) see it
 *      -- the wrapper being a child wrapper (owner, index, finish exactly as
 *      with fw_child_new; finish is called when the coroutine returns or
 *      raises; owner may be NULL for none) that first hands the Task what
 *      the step yielded, then forwards send/throw/close to the coroutine.
 *  -1: error to propagate: KeyboardInterrupt/SystemExit raised by the step
 *      (the coroutine is then finished), or creating the Task failed (then
 *      the coroutine is closed as fw_close_unscheduled does: on a
 *      RuntimeError), or the context could not be copied or entered (the
 *      coroutine, never started, is then closed).
 * The outputs not named are set to NULL.  `loop` must not be NULL. */
int fw_eager_start(fw_state *st, PyObject *loop, PyObject *coro,
                   PyObject *base_ctx, PyObject *owner, Py_ssize_t index,
                   fw_finish_fn finish, PyObject **value, PyObject **exc,
                   PyObject **task);
int fw_eager_init(PyObject *module, fw_state *st);

/* ---- small shared helpers */

/* An owned array of n references (NULL entries allowed), such as the
 * children of race() or gather's results: release them and free the array;
 * *refs is NULL from the start, so code that a release runs sees no array. */
static inline void
fw_ref_array_free(PyObject ***refs, Py_ssize_t n)
{
    PyObject **a = *refs;
    *refs = NULL;
    if (a != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_CLEAR(a[i]);
        }
        PyMem_Free(a);
    }
}

/* tp_traverse of such an array (NULL: none). */
static inline int
fw_ref_array_visit(PyObject **refs, Py_ssize_t n, visitproc visit, void *arg)
{
    if (refs != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_VISIT(refs[i]);
        }
    }
    return 0;
}

/* Open addressing by object address (the arguments gather and race dedup
 * by identity): a power of two for n keys at most half full, and the first
 * slot to probe for `key` (mask: that capacity - 1). */
static inline size_t
fw_ptr_table_capacity(Py_ssize_t n)
{
    size_t cap = 8;
    while (cap < (size_t)n * 2) {
        cap <<= 1;
    }
    return cap;
}

static inline size_t
fw_ptr_slot(PyObject *key, size_t mask)
{
    uint64_t h = (uint64_t)(uintptr_t)key;
    h = (h >> 4) * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h ^ (h >> 29)) & mask;
}

/* task._must_cancel: a Task cancelled during the step in which its
 * coroutine returned ends cancelled all the same (Task.__step).  0/1, or -1
 * when it cannot be read (no error set then). */
static inline int
fw_task_must_cancel(fw_state *st, PyObject *task)
{
    PyObject *must = PyObject_GetAttr(task, st->str_must_cancel);
    if (must == NULL) {
        PyErr_Clear();
        return -1;
    }
    int r = must != Py_False;
    Py_DECREF(must);
    return r;
}

/* Take the current exception (normalized) out of the thread state: a new
 * reference, or NULL when none is set.  fw_err_restore() puts it back and
 * steals the reference. */
static inline PyObject *
fw_err_fetch(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_DECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static inline void
fw_err_restore(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc,
                  PyException_GetTraceback(exc));
#endif
}

/* getattr(obj, name) that reports a missing attribute as 0 instead of an
 * AttributeError: -1 error, 0 missing, 1 found (*res is a new reference). */
static inline int
fw_getattr_optional(PyObject *obj, PyObject *name, PyObject **res)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(obj, name, res);
#else
    *res = PyObject_GetAttr(obj, name);
    if (*res != NULL) {
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
#endif
}

/* asyncio.futures.isfuture(obj): -1 error, 0/1. */
int fw_isfuture(fw_state *st, PyObject *obj);
/* futures.isfuture(obj) or coroutines.iscoroutine(obj): -1 error, 0/1. */
int fw_is_future_or_coroutine(fw_state *st, PyObject *obj);
/* A getter returning its closure, a C string, as a str: the __name__ and
 * __qualname__ that make a C callback read like the stdlib's closure where
 * a future's repr lists its callbacks. */
PyObject *fw_get_closure_text(PyObject *op, void *closure);
/* The class asyncio.tasks.Task at this moment: BaseEventLoop.create_task
 * reads tasks.Task at each call (CPython's tests rebind it to the
 * pure-Python Task).  A new reference, or NULL with the AttributeError
 * that reading it raises. */
PyObject *fw_task_class(fw_state *st);
/* TypeError(fmt % type(obj).__name__), `fmt` holding one %U. */
void fw_type_error_naming_type(const char *fmt, PyObject *obj);
/* The timeout= of gather() and race() (docs/extras.md): 0 for None (no
 * deadline), else 1 and *delay, in seconds: an int or a float, not a bool
 * (TypeError), not NaN (ValueError); an int beyond a double is +-inf.  -1
 * error. */
int fw_timeout_arg(PyObject *timeout, double *delay);

/* tasks.ensure_future(arg, loop=loop) (`loop` NULL: none given), with
 * asyncio's own futures and native coroutines handled in C: a new
 * reference or NULL. */
PyObject *fw_ensure_future(fw_state *st, PyObject *arg, PyObject *loop);

/* asyncio.futures._get_loop(fut): new reference or NULL. */
PyObject *fw_get_loop(fw_state *st, PyObject *fut);
/* loop.call_soon(callback, *args, context=st->empty_context). */
int fw_call_soon(fw_state *st, PyObject *loop, PyObject *callback,
                 PyObject *const *args, Py_ssize_t nargs);
/* The arguments of a call to `name` do not bind: raise the TypeError that
 * a Python function with the same signature raises (`self` for methods,
 * or NULL).  Always returns NULL. */
PyObject *fw_signature_error(fw_state *st, const char *name, PyObject *self,
                             PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames);

/* Bind a call to `name`'s signature (see fw_signature_error): the tuple
 * of its parameters' values, or NULL with the interpreter's TypeError.
 * fw_bind_call() takes the arguments as a tuple and a dict. */
PyObject *fw_bind(fw_state *st, const char *name, PyObject *self,
                  PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
PyObject *fw_bind_call(fw_state *st, const char *name, PyObject *self,
                       PyObject *args, PyObject *kwds);

/* tp_dealloc of our GC types without a finalizer: untrack, clear weak
 * references, tp_clear, free, release the type. */
void fw_gc_dealloc(PyObject *op);

/* Raise StopIteration(value) the way a returning generator does. */
void fw_set_stop_iteration(PyObject *value);


/* fut.<method>(*args[1:], **kw) where args[0] is fut; direct through the
 * descriptor for asyncio's own types.  `args` may be written to
 * (PY_VECTORCALL_ARGUMENTS_OFFSET is not used). */
static inline PyObject *
fw_fut_vectorcall(fw_state *st, fw_method m, PyObject *const *args,
                  Py_ssize_t nargs, PyObject *kwnames)
{
    PyTypeObject *tp = Py_TYPE(args[0]);
    if (tp == st->TaskType) {
        return PyObject_Vectorcall(st->task_methods[m], args, (size_t)nargs,
                                   kwnames);
    }
    if (tp == st->FutureType || tp == st->GatheringFutureType) {
        return PyObject_Vectorcall(st->future_methods[m], args,
                                   (size_t)nargs, kwnames);
    }
    return PyObject_VectorcallMethod(st->method_names[m], args,
                                     (size_t)nargs, kwnames);
}

/* fut.<method>() */
static inline PyObject *
fw_fut_call(fw_state *st, PyObject *fut, fw_method m)
{
    return fw_fut_vectorcall(st, m, &fut, 1, NULL);
}

/* Truth of fut.<method>(): -1 error, 0/1. */
static inline int
fw_fut_bool(fw_state *st, PyObject *fut, fw_method m)
{
    PyObject *res = fw_fut_call(st, fut, m);
    if (res == NULL) {
        return -1;
    }
    int r = res == Py_True ? 1 : res == Py_False ? 0 : PyObject_IsTrue(res);
    Py_DECREF(res);
    return r;
}
/* fut.add_done_callback(callback); asyncio's own futures get our empty
 * context instead of a copy of the current one (our callbacks never read
 * context variables).  fut.remove_done_callback(callback).  -1 error. */
int fw_add_done_callback(fw_state *st, PyObject *fut, PyObject *callback);
int fw_remove_done_callback(fw_state *st, PyObject *fut, PyObject *callback);

/* loop.create_task(coro) failed: like ensure_future, close the coroutine
 * when the error is a RuntimeError (a closed loop), keeping the error. */
void fw_close_unscheduled(fw_state *st, PyObject *coro);

/* collections.abc.Coroutine.register(tp): asyncio.iscoroutine() accepts
 * our coroutine-protocol types through the ABC's subclass hook already;
 * registering makes that explicit and cheap. */
int fw_register_coroutine_type(PyTypeObject *tp);

/* Is the loop's create_task + task factory one whose behaviour we know
 * (asyncio's BaseEventLoop or uvloop, factory None or eager_task_factory)?
 * Then a task created from a fastwait wrapper runs exactly that wrapper.
 * -1 error, 0/1. */
int fw_loop_runs_wrappers(fw_state *st, PyObject *loop);
/* What it decides from: FW_FACTORY_NONE (a known loop type, no task
 * factory), FW_FACTORY_EAGER (a known loop type, eager_task_factory),
 * FW_FACTORY_OTHER (any other loop type or factory); -1 error. */
enum { FW_FACTORY_OTHER, FW_FACTORY_NONE, FW_FACTORY_EAGER };
int fw_loop_task_factory(fw_state *st, PyObject *loop);
/* The first half of that: is the loop type's create_task asyncio's or
 * uvloop's (not overridden)?  -1 error, 0/1. */
int fw_loop_type_known(fw_state *st, PyTypeObject *tp);

/* ---- 3.14+ call-graph edges (module.c).  asyncio.futures'
 * future_add_to_awaited_by / future_discard_from_awaited_by are read at each
 * use, as the stdlib reads them; while they are _asyncio's own, which
 * ignore anything but its Future and Task (and subclasses), the helpers
 * skip anything else without a call. */

/* The waiter new edges point to: current_task(loop) (loop NULL:
 * current_task(), which raises without a running loop) when this
 * interpreter records edges.  *waiter is a new reference, or NULL when no
 * edge is recorded (before 3.14, or no task).  -1 error. */
int fw_graph_waiter(fw_state *st, PyObject *loop, PyObject **waiter);
/* futures.future_add_to_awaited_by(fut, waiter) (discard 0) or
 * future_discard_from_awaited_by (discard 1).  -1 error. */
int fw_graph_call(fw_state *st, int discard, PyObject *fut, PyObject *waiter);

static inline int
fw_graph_add(fw_state *st, PyObject *fut, PyObject *waiter)
{
    return waiter == NULL ? 0 : fw_graph_call(st, 0, fut, waiter);
}

static inline int
fw_graph_discard(fw_state *st, PyObject *fut, PyObject *waiter)
{
    return waiter == NULL ? 0 : fw_graph_call(st, 1, fut, waiter);
}

#endif /* FASTWAIT_STATE_H */

//! The tokio runtime the bindings run the client on, and the bridge that hands results back to asyncio.
//!
//! # Why not `pyo3_async_runtimes::future_into_py`
//! It costs two task spawns, a `spawn_blocking` and one `call_soon_threadsafe` (a write to the loop's self-pipe)
//! per operation, and it prints a traceback for every result that arrives after its event loop was closed.
//! Here each operation is one tokio task; finished results are queued on a [`Bridge`] (one per event loop) and
//! a single `call_soon_threadsafe` drains everything that finished meanwhile, on the loop's thread. Under load
//! (pipelined publishes, subscriptions) one wake-up completes hundreds of futures.
//!
//! Results are turned into Python objects on the loop's thread, inside the drain: tokio threads take the GIL
//! only to schedule a drain, never to convert values.
//!
//! # Loops that close with work in flight
//! A drain scheduled on a closed loop fails with `RuntimeError`; the bridge then marks itself closed and drops
//! whatever finishes later without touching Python. After interpreter shutdown has begun (an `atexit` hook
//! sets [`FINALIZING`]), no tokio thread takes the GIL again.
//!
//! # fork()
//! The runtime is created on first use; tokio's worker threads do not survive `fork()`. Do not fork after
//! using the client (start worker processes first, or use the `spawn` start method).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCFunction;

/// Set by an `atexit` hook: the interpreter is shutting down, tokio threads must not take the GIL anymore.
pub static FINALIZING: AtomicBool = AtomicBool::new(false);

/// The process-wide multi-threaded runtime (created on first use).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("liftbridge-io")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime for liftbridge (out of threads or memory?)")
    })
}

/// Turns a finished operation's value into a Python object; runs on the event loop's thread with the GIL.
pub type Convert = Box<dyn FnOnce(Python<'_>, &Arc<Bridge>) -> PyResult<Py<PyAny>> + Send>;

/// One finished operation waiting to be delivered to its asyncio future.
struct Completion {
    future: Py<PyAny>,
    convert: Convert,
}

/// Delivers results from tokio tasks to the futures of one asyncio event loop.
pub struct Bridge {
    event_loop: Py<PyAny>,
    /// Results waiting for the next drain.
    pending: Mutex<Vec<Completion>>,
    /// A drain is scheduled on the loop (or running): no need to schedule another.
    scheduled: AtomicBool,
    /// The loop refused a drain (it was closed): results are dropped from now on.
    closed: AtomicBool,
    /// The Python callable that drains this bridge (created once; holds a weak reference back).
    drainer: OnceLock<Py<PyAny>>,
}

impl Bridge {
    /// The bridge of the running event loop of this thread (created when the loop changes).
    pub fn current(py: Python<'_>) -> PyResult<Arc<Bridge>> {
        thread_local! {
            static CURRENT: std::cell::RefCell<Option<Arc<Bridge>>> = const { std::cell::RefCell::new(None) };
        }
        let event_loop = get_running_loop(py)?;
        if let Some(b) = CURRENT.with(|c| c.borrow().clone())
            && b.event_loop.bind(py).is(&event_loop)
        {
            return Ok(b);
        }
        let bridge = Arc::new(Bridge {
            event_loop: event_loop.unbind(),
            pending: Mutex::new(Vec::new()),
            scheduled: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            drainer: OnceLock::new(),
        });
        let weak = Arc::downgrade(&bridge);
        let drain = PyCFunction::new_closure(py, None, None, move |args, _kwargs| {
            if let Some(b) = weak.upgrade() {
                b.drain(args.py());
            }
        })?;
        let _ = bridge.drainer.set(drain.into_any().unbind());
        CURRENT.with(|c| *c.borrow_mut() = Some(bridge.clone()));
        Ok(bridge)
    }

    /// A new asyncio future on this loop.
    pub fn create_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.event_loop
            .bind(py)
            .call_method0(pyo3::intern!(py, "create_future"))
    }

    /// Runs `fut` on the runtime and returns an asyncio future that resolves to its converted output.
    ///
    /// With `cancellable`, cancelling the asyncio future aborts the tokio task (dropping whatever it holds,
    /// such as a subscription's lock); otherwise the operation runs to completion and its result is dropped.
    pub fn spawn<'py, F, T>(
        self: &Arc<Self>,
        py: Python<'py>,
        cancellable: bool,
        fut: F,
        convert: impl FnOnce(Python<'_>, &Arc<Bridge>, T) -> PyResult<Py<PyAny>> + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let py_fut = self.create_future(py)?;
        let future = py_fut.clone().unbind();
        let bridge = self.clone();
        let task = runtime().spawn(async move {
            let value = fut.await;
            bridge.complete(
                future,
                Box::new(move |py, bridge| convert(py, bridge, value)),
            );
        });
        if cancellable {
            let abort = task.abort_handle();
            let on_done = PyCFunction::new_closure(py, None, None, move |args, _kwargs| {
                let cancelled = args
                    .get_item(0)
                    .and_then(|f| f.call_method0("cancelled"))
                    .and_then(|c| c.is_truthy())
                    .unwrap_or(false);
                if cancelled {
                    abort.abort();
                }
            })?;
            py_fut.call_method1(pyo3::intern!(py, "add_done_callback"), (on_done,))?;
        }
        Ok(py_fut)
    }

    /// Queues a result and makes sure a drain is scheduled (called on tokio threads, without the GIL).
    fn complete(self: &Arc<Self>, future: Py<PyAny>, convert: Convert) {
        if self.closed.load(Ordering::Acquire) || FINALIZING.load(Ordering::Acquire) {
            drop_without_gil(future);
            return;
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Completion { future, convert });
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        // Taking the GIL may wait for the loop's thread: do it off the tokio workers.
        let bridge = self.clone();
        runtime().spawn_blocking(move || {
            if FINALIZING.load(Ordering::Acquire) {
                return;
            }
            Python::attach(|py| {
                let Some(drainer) = bridge.drainer.get() else {
                    return;
                };
                let scheduled = bridge.event_loop.bind(py).call_method1(
                    pyo3::intern!(py, "call_soon_threadsafe"),
                    (drainer.bind(py),),
                );
                if scheduled.is_err() {
                    // The loop is closed: nobody will ever await these futures.
                    bridge.closed.store(true, Ordering::Release);
                    let dropped = std::mem::take(
                        &mut *bridge.pending.lock().unwrap_or_else(|p| p.into_inner()),
                    );
                    drop(dropped);
                }
            });
        });
    }

    /// Delivers every queued result (on the loop's thread).
    fn drain(self: &Arc<Self>, py: Python<'_>) {
        self.scheduled.store(false, Ordering::Release);
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for Completion { future, convert } in batch {
            let future = future.bind(py);
            // A cancelled future is done: its result is dropped.
            if future
                .call_method0(pyo3::intern!(py, "done"))
                .and_then(|d| d.is_truthy())
                .unwrap_or(true)
            {
                continue;
            }
            let outcome = match convert(py, self) {
                Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,)),
                Err(err) => {
                    future.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),))
                }
            };
            if let Err(e) = outcome {
                e.write_unraisable(py, Some(future));
            }
        }
    }
}

/// Drops a Python reference from a thread that may not hold the GIL: pyo3 defers the decref to the next time
/// the GIL is taken, which is what we want (and harmless during shutdown).
fn drop_without_gil(obj: Py<PyAny>) {
    drop(obj);
}

/// `asyncio.get_running_loop()`: fails with `RuntimeError` outside a coroutine.
pub fn get_running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET_RUNNING_LOOP
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
        })?
        .bind(py)
        .call0()
}

/// An already finished awaitable: `await ready` returns its value without a trip through the event loop.
#[pyclass(module = "liftbridge._native", frozen)]
pub struct Ready {
    value: Py<PyAny>,
}

impl Ready {
    /// An awaitable that returns `value`.
    pub fn new(value: Py<PyAny>) -> Ready {
        Ready { value }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Err(pyo3::exceptions::PyStopIteration::new_err((self
            .value
            .clone_ref(py),)))
    }
}

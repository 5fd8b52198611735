//! The tokio runtime the bindings run the client on, and the bridge that hands results back to asyncio.
//!
//! # Why not `pyo3_async_runtimes::future_into_py`
//! It costs two task spawns, a `spawn_blocking` and one `call_soon_threadsafe` (a write to the loop's self-pipe)
//! per operation, and it prints a traceback for every result that arrives after its event loop was closed.
//! Here each operation is one tokio task; finished results are queued on a [`Bridge`] (one per event loop) and
//! one wake-up of the loop drains everything that finished meanwhile, on the loop's thread. Under load
//! (pipelined publishes, subscriptions) one wake-up completes hundreds of futures.
//!
//! The wake-up is one byte written to a socket pair (non-blocking both ends) whose reading end the loop watches (`loop.add_reader`): tokio
//! threads never take the GIL, so they never compete with the loop's thread for it. Loops without
//! `add_reader` (Windows' proactor) are woken with `call_soon_threadsafe` from a blocking-pool thread instead.
//! Results are turned into Python objects on the loop's thread, inside the drain.
//!
//! # Loops that close with work in flight
//! Results that finish after their loop was closed are never drained: nothing touches Python for them (with
//! `call_soon_threadsafe`, the `RuntimeError` of a closed loop marks the bridge closed and they are dropped).
//! After interpreter shutdown has begun (an `atexit` hook sets [`FINALIZING`]), no tokio thread takes the GIL.
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
    /// The wake-up pipe the loop watches (reading end, writing end), when it supports `add_reader`.
    pipe: Option<WakePipe>,
}

/// A non-blocking socket pair: reading end, writing end.
#[cfg(unix)]
type WakePipe = (
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixStream,
);
/// Never created off Unix (the loop is woken with `call_soon_threadsafe` there).
#[cfg(not(unix))]
type WakePipe = (std::io::PipeReader, std::io::PipeWriter);

/// A wake-up pipe, where the platform has one loops can watch.
fn wake_pipe() -> Option<WakePipe> {
    #[cfg(unix)]
    {
        let (r, w) = std::os::unix::net::UnixStream::pair().ok()?;
        r.set_nonblocking(true).ok()?;
        w.set_nonblocking(true).ok()?;
        Some((r, w))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

thread_local! {
    /// The bridge of the loop that last ran on this thread.
    static CURRENT: std::cell::RefCell<Option<Arc<Bridge>>> = const { std::cell::RefCell::new(None) };
}

impl Bridge {
    /// The bridge of the running event loop of this thread (created when the loop changes).
    pub fn current(py: Python<'_>) -> PyResult<Arc<Bridge>> {
        let event_loop = get_running_loop(py)?;
        let previous = CURRENT.with(|c| c.borrow().clone());
        if let Some(b) = &previous
            && b.event_loop.bind(py).is(&event_loop)
        {
            return Ok(b.clone());
        }
        // Another loop runs on this thread now: the previous one stops watching its pipe.
        if let Some(old) = previous {
            old.unwatch(py);
        }
        let pipe = wake_pipe();
        let mut bridge = Arc::new(Bridge {
            event_loop: event_loop.clone().unbind(),
            pending: Mutex::new(Vec::new()),
            scheduled: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            drainer: OnceLock::new(),
            pipe,
        });
        let weak = Arc::downgrade(&bridge);
        let drain = PyCFunction::new_closure(py, None, None, move |args, _kwargs| {
            if let Some(b) = weak.upgrade() {
                b.drain(args.py());
            }
        })?;
        let _ = bridge.drainer.set(drain.clone().into_any().unbind());
        #[cfg(unix)]
        if let Some((reader, _)) = &bridge.pipe {
            use std::os::fd::AsRawFd;
            let watched = event_loop
                .call_method1(pyo3::intern!(py, "add_reader"), (reader.as_raw_fd(), drain));
            if watched.is_err() {
                // No add_reader on this loop: fall back to call_soon_threadsafe.
                if let Some(b) = Arc::get_mut(&mut bridge) {
                    b.pipe = None;
                }
            }
        }
        CURRENT.with(|c| *c.borrow_mut() = Some(bridge.clone()));
        Ok(bridge)
    }

    /// Stops the loop watching this bridge's pipe (if it still runs).
    fn unwatch(&self, py: Python<'_>) {
        #[cfg(unix)]
        if let Some((reader, _)) = &self.pipe {
            use std::os::fd::AsRawFd;
            let _ = self
                .event_loop
                .bind(py)
                .call_method1(pyo3::intern!(py, "remove_reader"), (reader.as_raw_fd(),));
        }
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

    /// Like [`spawn`](Bridge::spawn) (not cancellable), but first polls `fut` once on the calling thread: when it
    /// is ready at once (a publish queued without waiting for room in the window), the result comes back as a
    /// [`Ready`] awaitable and the event loop is not involved at all. Otherwise the same future continues on
    /// the runtime.
    pub fn spawn_eager<'py, F, T>(
        self: &Arc<Self>,
        py: Python<'py>,
        fut: F,
        convert: impl FnOnce(Python<'_>, &Arc<Bridge>, T) -> PyResult<Py<PyAny>> + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let mut fut = Box::pin(fut);
        let polled = {
            let _runtime = runtime().enter();
            let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
            fut.as_mut().poll(&mut cx)
        };
        match polled {
            std::task::Poll::Ready(value) => {
                let ready = match convert(py, self, value) {
                    Ok(v) => Ready::new(v),
                    Err(e) => Ready::failed(e.into_value(py).into_any()),
                };
                Ok(Bound::new(py, ready)?.into_any())
            }
            std::task::Poll::Pending => self.spawn(py, false, fut, convert),
        }
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
        if self.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some((_, mut writer)) = self.pipe.as_ref().map(|(r, w)| (r, w)) {
            use std::io::Write;
            // One byte per wake-up; the drain reads it. A full buffer means bytes are waiting to be read anyway;
            // any other failure means the loop is gone.
            match writer.write(&[1]) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => self.closed.store(true, Ordering::Release),
            }
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
        if let Some((mut reader, _)) = self.pipe.as_ref().map(|(r, w)| (r, w)) {
            use std::io::Read;
            // Non-blocking (a spurious call reads nothing). It comes before clearing the
            // flag: a byte written after the flag is cleared stays for the next drain, so no wake-up is lost
            // (clearing first would let this read swallow the byte of a producer that set the flag again).
            let mut buf = [0u8; 64];
            let _ = reader.read(&mut buf);
        }
        self.scheduled.store(false, Ordering::SeqCst);
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
#[pyclass(module = "liftbridge", frozen)]
pub struct Ready {
    value: Py<PyAny>,
    /// The exception `await` raises instead, if any.
    error: Option<Py<PyAny>>,
}

impl Ready {
    /// An awaitable that returns `value`.
    pub fn new(value: Py<PyAny>) -> Ready {
        Ready { value, error: None }
    }

    /// An awaitable that raises `exception` (an exception instance).
    pub fn failed(exception: Py<PyAny>) -> Ready {
        Python::attach(|py| Ready {
            value: py.None(),
            error: Some(exception),
        })
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
        if let Some(e) = &self.error {
            return Err(PyErr::from_value(e.bind(py).clone()));
        }
        Err(pyo3::exceptions::PyStopIteration::new_err((self
            .value
            .clone_ref(py),)))
    }
}

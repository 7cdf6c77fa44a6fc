//! The model thread: a bounded queue in front of one [`SentenceEncoder`], forming batches from whatever is
//! waiting (the text-embeddings-inference design, simplified), under a supervisor. The model never runs on
//! the async runtime's worker threads; async callers await a oneshot reply.
//!
//! Admission happens at the door ([`super::admission`]): a request the model could not start within its
//! deadline is refused at once. A queued job whose deadline passes or whose caller leaves is dropped before
//! it costs model time. A panic inside a forward pass fails that batch only; a panic of the thread itself
//! turns the service NOT_SERVING while the supervisor reloads the model, then SERVING again.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::admission::{self, Load, QueueLimits, RateMeter, Refusal, Slot};
use super::faults::Faults;
use super::{EmbedError, SentenceEncoder, TokenEmbedding};
use semroute_kernels::Team;

type Vectors = Result<Vec<Vec<f32>>, EmbedError>;
type Tokens = Result<Vec<TokenEmbedding>, EmbedError>;

/// Loads the model again after its thread failed (the failed one's state cannot be trusted).
pub type Reload = Box<dyn Fn() -> Result<SentenceEncoder, EmbedError> + Send>;

/// Where a job's results go: sentence vectors only, or token vectors too (`aggregation: late`). A batch
/// that holds any token job runs the token-returning forward pass for all of its texts; its sentence
/// vectors are the same, so plain jobs in it are not affected.
enum Reply {
    Vectors(oneshot::Sender<(Vectors, Option<JobTimes>)>),
    Tokens(oneshot::Sender<(Tokens, Option<JobTimes>)>),
}

/// When an answered job was queued, began its first forward pass and ended its last (the request's trace
/// shows them as its `queue` and `forward` spans).
#[derive(Debug, Clone, Copy)]
struct JobTimes {
    queued_at: Instant,
    started: Instant,
    ended: Instant,
}

impl JobTimes {
    fn trace(self, texts: usize) {
        crate::telemetry::span::record_model_times(self.queued_at, self.started, self.ended, texts);
    }
}

impl Reply {
    fn is_closed(&self) -> bool {
        match self {
            Reply::Vectors(r) => r.is_closed(),
            Reply::Tokens(r) => r.is_closed(),
        }
    }

    fn fail(self, e: EmbedError) {
        let _ = match self {
            Reply::Vectors(r) => r.send((Err(e), None)).map_err(drop),
            Reply::Tokens(r) => r.send((Err(e), None)).map_err(drop),
        };
    }
}

struct Job {
    texts: Vec<String>,
    /// Each text's token ids when the caller tokenised them (small requests); empty when the model thread
    /// is to (large jobs, which would hold an async worker for milliseconds).
    ids: Vec<Vec<u32>>,
    reply: Reply,
    /// The request's place in the queue ([`Slot::none`] for the service's own jobs, which wait instead
    /// of being refused).
    slot: Slot,
    /// When it was queued: its queue time is measured from here.
    queued_at: Instant,
    /// Dropped unanswered (DeadlineExceeded) if the model has not finished it by then.
    deadline: Option<Instant>,
}

/// Receives the model thread's timings (the service's metrics). Called on the model thread and at the
/// door, so an implementation must be cheap and must not block.
pub trait EmbedObserver: Send + Sync {
    /// A forward pass ran over `texts` texts.
    fn batch(&self, texts: usize);
    /// A request was answered: it waited `queued` before its first forward pass began, then `forward`
    /// until its last one ended. Only requests (not the service's own jobs) are reported.
    fn request(&self, queued: Duration, forward: Duration);
    /// A request was refused at the door.
    fn refused(&self, reason: Refusal);
    /// A queued request was dropped because its deadline passed before the model finished it.
    fn expired(&self);
    /// The model thread failed and the model was loaded again.
    fn restarted(&self);
}

/// The observer, set once the service has one; shared by every handle and the model thread.
type ObserverSlot = Arc<OnceLock<Arc<dyn EmbedObserver>>>;

/// A job being worked through in chunks. Large jobs (an index build) are sorted by length so each chunk
/// pads little, and are interleaved with small ones so live requests are not stuck behind a rebuild.
struct Pending {
    texts: Vec<String>,
    /// Token ids per text, as in [`Job::ids`]; filled in on the model thread when empty.
    ids: Vec<Vec<u32>>,
    /// Indices into `texts`, shortest first; `cursor` is how far we got.
    order: Vec<usize>,
    cursor: usize,
    out: Vec<TokenEmbedding>,
    reply: Reply,
    /// Released when this is dropped (answered, failed or abandoned).
    slot: Slot,
    queued_at: Instant,
    deadline: Option<Instant>,
    /// When its first forward pass began.
    started: Option<Instant>,
}

impl Pending {
    fn new(job: Job) -> Self {
        let mut order: Vec<usize> = (0..job.texts.len()).collect();
        if order.len() > 1 {
            order.sort_by_key(|&i| job.texts[i].len());
        }
        let n = job.texts.len();
        Self {
            texts: job.texts,
            ids: job.ids,
            order,
            cursor: 0,
            out: vec![
                TokenEmbedding {
                    ids: Vec::new(),
                    tokens: Vec::new(),
                    sentence: Vec::new(),
                };
                n
            ],
            reply: job.reply,
            slot: job.slot,
            queued_at: job.queued_at,
            deadline: job.deadline,
            started: None,
        }
    }

    fn remaining(&self) -> usize {
        self.order.len() - self.cursor
    }

    fn wants_tokens(&self) -> bool {
        matches!(self.reply, Reply::Tokens(_))
    }

    /// Answers the caller. The place in the queue is released first: a caller that sends its next
    /// request the moment this answer arrives must find it free.
    fn finish(self, observer: Option<&Arc<dyn EmbedObserver>>) {
        let Pending {
            out,
            reply,
            slot,
            queued_at,
            started,
            ..
        } = self;
        let request = slot.is_request();
        drop(slot);
        let ended = Instant::now();
        if let (Some(o), Some(started), true) = (observer, started, request) {
            o.request(
                started.saturating_duration_since(queued_at),
                ended.saturating_duration_since(started),
            );
        }
        let times = started.map(|started| JobTimes {
            queued_at,
            started,
            ended,
        });
        let _ = match reply {
            Reply::Vectors(r) => r
                .send((Ok(out.into_iter().map(|t| t.sentence).collect()), times))
                .map_err(drop),
            Reply::Tokens(r) => r.send((Ok(out), times)).map_err(drop),
        };
    }

    /// Fails the caller, releasing the place in the queue first (see [`Self::finish`]).
    fn fail(self, e: EmbedError) {
        let Pending { reply, slot, .. } = self;
        drop(slot);
        reply.fail(e);
    }
}

/// Facts about the loaded model that callers need without touching it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Vector dimension.
    pub dim: usize,
    /// Tokens kept per text.
    pub max_tokens: usize,
    /// The folder the model was loaded from.
    pub dir: std::path::PathBuf,
    /// Identity of the model and its vector-shaping settings; keys the embedding store.
    pub identity: String,
}

/// How the model thread batches and admits work.
#[derive(Debug, Clone, Copy)]
pub struct QueueOptions {
    /// Most texts per forward pass.
    pub max_batch: usize,
    /// The queue's bounds.
    pub limits: QueueLimits,
    /// Threads for the forward pass.
    pub threads: usize,
}

/// A cheap, cloneable handle to the model thread.
#[derive(Clone)]
pub struct Embedder {
    tx: SyncSender<Job>,
    limits: QueueLimits,
    /// Requests admitted and not yet answered, and the model's rate.
    load: Arc<Load>,
    info: Arc<ModelInfo>,
    tokenizer: Arc<tokenizers::Tokenizer>,
    observer: ObserverSlot,
    /// False while the supervisor reloads a failed model.
    alive: watch::Receiver<bool>,
}

impl Embedder {
    /// Moves `encoder` onto its own thread (and a rayon pool of `threads` for candle's kernels) and returns a
    /// handle. At most `queue_capacity` texts wait; more are refused with [`EmbedError::Overloaded`].
    pub fn start(
        encoder: SentenceEncoder,
        max_batch: usize,
        queue_capacity: usize,
        threads: usize,
    ) -> Result<Self, EmbedError> {
        let options = QueueOptions {
            max_batch,
            limits: QueueLimits::texts(queue_capacity),
            threads,
        };
        Self::start_supervised(encoder, options, None)
    }

    /// Like [`Self::start`] with every admission bound, and `reload` to load the model again should its
    /// thread fail (without it, the same encoder is reused).
    pub fn start_supervised(
        encoder: SentenceEncoder,
        options: QueueOptions,
        reload: Option<Reload>,
    ) -> Result<Self, EmbedError> {
        let info = Arc::new(ModelInfo {
            dim: encoder.dim(),
            max_tokens: encoder.max_tokens(),
            dir: encoder.dir().to_path_buf(),
            identity: encoder.identity().to_string(),
        });
        let runner = Runner::new(&encoder, options.threads)?;
        let tokenizer = Arc::new(encoder.tokenizer().clone());
        // The channel only carries jobs from the door to the thread; the bounds are kept by `Load`.
        let (tx, rx) = std::sync::mpsc::sync_channel(options.limits.texts.clamp(1, 1 << 16));
        let observer = ObserverSlot::default();
        let load = Arc::new(Load::default());
        let (alive_tx, alive) = watch::channel(true);
        let model = ModelThread {
            rx,
            max_batch: options.max_batch.max(1),
            observer: observer.clone(),
            load: load.clone(),
            faults: Faults::from_env(),
        };
        std::thread::Builder::new()
            .name("semroute-model".into())
            .spawn(move || model.supervise(encoder, runner, reload, alive_tx))
            .map_err(|e| EmbedError::Load {
                what: "model thread".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            tx,
            limits: options.limits,
            load,
            info,
            tokenizer,
            observer,
            alive,
        })
    }

    /// Reports the model thread's timings, batch sizes and refusals to `observer` from now on. Only the
    /// first call has an effect (one service, one set of metrics).
    pub fn set_observer(&self, observer: Arc<dyn EmbedObserver>) {
        let _ = self.observer.set(observer);
    }

    /// Texts admitted for requests and not yet answered (the service's own jobs, such as index builds,
    /// not counted).
    pub fn queue_depth(&self) -> usize {
        self.load.texts()
    }

    /// The model's recent rate in estimated tokens per second, once measured.
    pub fn rate(&self) -> Option<f64> {
        self.load.rate()
    }

    /// True unless the model thread failed and its model is being loaded again.
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Changes of [`Self::is_alive`], for health reporting.
    pub fn alive_changes(&self) -> watch::Receiver<bool> {
        self.alive.clone()
    }

    /// Facts about the loaded model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The tokens each text is embedded from ([CLS] and [SEP] included, after truncation): what an
    /// embeddings API reports as usage. Tokenising is microseconds per text, so it runs on the caller.
    pub fn count_tokens(&self, texts: &[String]) -> Result<Vec<usize>, EmbedError> {
        texts
            .iter()
            .map(|t| super::encoder::tokenize(&self.tokenizer, t).map(|ids| ids.len()))
            .collect()
    }

    /// Queues a job. A request (`admit`) takes a place or is refused at once (see [`super::admission`]);
    /// the service's own jobs (index builds, from blocking code) wait for room.
    fn send(
        &self,
        texts: Vec<String>,
        reply: Reply,
        admit: bool,
        deadline: Option<Instant>,
    ) -> Result<(), EmbedError> {
        if !admit {
            let job = Job {
                texts,
                ids: Vec::new(),
                reply,
                slot: Slot::none(),
                queued_at: Instant::now(),
                deadline: None,
            };
            return self.tx.send(job).map_err(|_| EmbedError::Stopped);
        }
        if !self.is_alive() {
            return Err(EmbedError::Restarting);
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(EmbedError::DeadlineExceeded);
        }
        // Tokenised here, on the caller's thread: the model thread's time goes to the model, a text the
        // tokenizer rejects fails its own request before it takes a place, and under load the callers'
        // threads tokenise in parallel with the forward pass.
        let ids = if texts.len() <= CALLER_TOKENISES_UP_TO {
            texts
                .iter()
                .map(|t| super::encoder::tokenize(&self.tokenizer, t))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let tokens = texts
            .iter()
            .map(|t| admission::cost(t, self.info.max_tokens))
            .sum();
        let slot = self
            .load
            .admit(texts.len(), tokens, &self.limits, deadline)
            .map_err(|r| self.refuse(r.reason, r.detail, r.retry_after))?;
        let job = Job {
            texts,
            ids,
            reply,
            slot,
            queued_at: Instant::now(),
            deadline,
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            // Admitted but the channel is momentarily full of the service's own jobs: refuse too.
            Err(TrySendError::Full(_)) => Err(self.refuse(
                Refusal::QueueFull,
                "the model queue is full of the service's own work (an index build)".into(),
                Duration::from_millis(100),
            )),
            Err(TrySendError::Disconnected(_)) => Err(EmbedError::Stopped),
        }
    }

    fn refuse(&self, reason: Refusal, detail: String, retry_after: Duration) -> EmbedError {
        if let Some(o) = self.observer.get() {
            o.refused(reason);
        }
        EmbedError::Overloaded {
            reason,
            detail,
            retry_after_ms: retry_after.as_millis().max(1) as u64,
        }
    }

    /// Like [`Self::embed`], also returning each text's token vectors (see
    /// [`SentenceEncoder::embed_with_tokens`]); the late-interaction rule needs them.
    pub async fn embed_tokens(&self, texts: Vec<String>) -> Tokens {
        self.embed_tokens_by(texts, None).await
    }

    /// Like [`Self::embed_tokens`], refused at once if the model could not start it by `deadline` and
    /// dropped unanswered if it has not finished by then.
    pub async fn embed_tokens_by(&self, texts: Vec<String>, deadline: Option<Instant>) -> Tokens {
        let (reply, rx) = oneshot::channel();
        let n = texts.len();
        self.send(texts, Reply::Tokens(reply), true, deadline)?;
        let (result, times) = rx.await.map_err(|_| self.gone())?;
        if let Some(t) = times {
            t.trace(n);
        }
        result
    }

    /// Like [`Self::embed_blocking`], also returning each text's token vectors. Must not be called from an
    /// async task.
    pub fn embed_tokens_blocking(&self, texts: Vec<String>) -> Tokens {
        let (reply, rx) = oneshot::channel();
        self.send(texts, Reply::Tokens(reply), false, None)?;
        rx.blocking_recv().map_err(|_| self.gone())?.0
    }

    /// Embeds `texts` (any number; large sets are chunked) from async code without blocking the runtime.
    pub async fn embed(&self, texts: Vec<String>) -> Vectors {
        self.embed_by(texts, None).await
    }

    /// Like [`Self::embed`], refused at once if the model could not start it by `deadline` and dropped
    /// unanswered if it has not finished by then.
    pub async fn embed_by(&self, texts: Vec<String>, deadline: Option<Instant>) -> Vectors {
        let (reply, rx) = oneshot::channel();
        let n = texts.len();
        self.send(texts, Reply::Vectors(reply), true, deadline)?;
        let (result, times) = rx.await.map_err(|_| self.gone())?;
        if let Some(t) = times {
            t.trace(n);
        }
        result
    }

    /// Embeds `texts` from synchronous code. Must not be called from an async task.
    pub fn embed_blocking(&self, texts: Vec<String>) -> Vectors {
        let (reply, rx) = oneshot::channel();
        self.send(texts, Reply::Vectors(reply), false, None)?;
        rx.blocking_recv().map_err(|_| self.gone())?.0
    }

    /// Why a job's reply never came: the thread failed with it (and is being restarted), or it stopped.
    fn gone(&self) -> EmbedError {
        if self.is_alive() {
            EmbedError::Stopped
        } else {
            EmbedError::Restarting
        }
    }
}

/// Requests of at most this many texts are tokenised on the caller's thread (a routing request is one to a
/// few texts, ~5-20 µs each); larger ones on the model thread, so an async worker is never held for
/// milliseconds.
const CALLER_TOKENISES_UP_TO: usize = 32;

/// One text of a batch: its text (fault injection looks at it) and its token ids (what the model runs on).
#[derive(Clone, Copy)]
struct Text<'a> {
    text: &'a str,
    ids: &'a [u32],
}

/// Where the forward pass runs its parallel work.
enum Runner {
    Team(Team),
    Rayon(rayon::ThreadPool),
}

/// Batches at least this large are split across the team's threads, each running whole forward passes on
/// its share, instead of every thread taking part of every matrix product. Measured on 2 cores (`semroute
/// bench`, 32 clients): splitting the batch avoids ~30 hand-offs per forward pass and each thread's
/// activations stay in its own cache; one query still gets both threads on each product.
const DATA_PARALLEL_MIN_BATCH: usize = 4;

/// Texts per forward pass within a thread's share. Our kernels run ragged batches (no padding rows) and are
/// as efficient at ~100 rows as at 1,000. Claiming 4- or 8-text chunks dynamically, longest first, measured
/// no better than these static shares at 32 clients (`semroute bench`, two servers side by side).
const SHARE_CHUNK: usize = 8;

impl Runner {
    /// Our kernels split each call over a spinning team (see `kernels::team`); candle's kernels use
    /// rayon, and running the forward pass inside the pool they parallelise over avoids the calling thread
    /// competing with the pool's spinning workers. Only the one the backend uses gets threads.
    fn new(encoder: &SentenceEncoder, threads: usize) -> Result<Self, EmbedError> {
        let threads = threads.max(1);
        let err = |what: &str, reason: String| EmbedError::Load {
            what: what.into(),
            reason,
        };
        Ok(if encoder.uses_kernels() {
            Runner::Team(
                Team::new(threads, "semroute-model")
                    .map_err(|e| err("model threads", e.to_string()))?,
            )
        } else {
            Runner::Rayon(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("semroute-model-{i}"))
                    .build()
                    .map_err(|e| err("model thread pool", e.to_string()))?,
            )
        })
    }

    fn threads(&self) -> usize {
        match self {
            Runner::Team(t) => t.threads(),
            Runner::Rayon(p) => p.current_num_threads(),
        }
    }

    fn run(&self, texts: &[Text], forward: &(dyn Fn(&[Text]) -> Tokens + Sync)) -> Tokens {
        match self {
            Runner::Team(team) if team.threads() > 1 && texts.len() >= DATA_PARALLEL_MIN_BATCH => {
                let parts = team.threads().min(texts.len());
                // Shortest first, dealt round robin: every thread gets a similar mix of lengths, so the
                // shares take about the same time.
                let mut order: Vec<usize> = (0..texts.len()).collect();
                order.sort_by_key(|&i| texts[i].ids.len());
                let shares: Vec<Vec<usize>> = (0..parts)
                    .map(|p| order.iter().skip(p).step_by(parts).copied().collect())
                    .collect();
                type Part = Result<Vec<(usize, TokenEmbedding)>, EmbedError>;
                let results: Vec<std::sync::Mutex<Option<Part>>> =
                    (0..parts).map(|_| std::sync::Mutex::new(None)).collect();
                // Not inside `install`: each thread's kernels run single-threaded on its own share.
                team.run(&|i| {
                    if i >= parts {
                        return;
                    }
                    let mut out = Vec::with_capacity(shares[i].len());
                    let r = shares[i].chunks(SHARE_CHUNK).try_for_each(|chunk| {
                        let batch: Vec<Text> = chunk.iter().map(|&j| texts[j]).collect();
                        out.extend(chunk.iter().copied().zip(forward(&batch)?));
                        Ok(())
                    });
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r.map(|()| out));
                });
                let mut slots: Vec<Option<TokenEmbedding>> =
                    (0..texts.len()).map(|_| None).collect();
                for r in results {
                    let r = r.into_inner().unwrap_or_else(|e| e.into_inner());
                    for (j, v) in r.unwrap_or(Err(EmbedError::Stopped))? {
                        slots[j] = Some(v);
                    }
                }
                Ok(slots
                    .into_iter()
                    .map(|v| v.expect("one result per text"))
                    .collect())
            }
            Runner::Team(team) => team.install(|| forward(texts)),
            Runner::Rayon(pool) => pool.install(|| forward(texts)),
        }
    }
}

/// The model thread's side of the queue: what survives a restart of the model.
struct ModelThread {
    rx: Receiver<Job>,
    max_batch: usize,
    observer: ObserverSlot,
    load: Arc<Load>,
    faults: Faults,
}

/// Turns the service NOT_SERVING the moment the model thread starts unwinding from a panic — before the
/// unwinding drops the pending jobs, so their callers already see [`EmbedError::Restarting`].
struct DownOnPanic<'a>(&'a watch::Sender<bool>);

impl Drop for DownOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.send_replace(false);
        }
    }
}

/// The longest pause between two attempts to load the model again.
const MAX_RELOAD_BACKOFF: Duration = Duration::from_secs(10);

impl ModelThread {
    /// Runs the model until every handle is dropped. If the thread itself panics (outside a forward pass,
    /// which has its own containment), the jobs it held fail with [`EmbedError::Restarting`], the service
    /// reports NOT_SERVING, the model is loaded again (retried with backoff) and serving resumes with the
    /// jobs still in the channel.
    fn supervise(
        self,
        mut encoder: SentenceEncoder,
        mut runner: Runner,
        reload: Option<Reload>,
        alive: watch::Sender<bool>,
    ) {
        loop {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run(&encoder, &runner, &alive)
            }));
            let panic = match run {
                Ok(()) => return, // every handle dropped: shut down
                Err(p) => p,
            };
            alive.send_replace(false);
            tracing::error!(error = %panic_message(&*panic), "the model thread failed: NOT_SERVING while the model is loaded again");
            let mut backoff = Duration::from_millis(100);
            // Without a reload function the same encoder is reused.
            while let Some(load) = &reload {
                let fresh = load().and_then(|e| Ok((Runner::new(&e, runner.threads())?, e)));
                match fresh {
                    Ok((r, e)) => {
                        (runner, encoder) = (r, e);
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, retry_in = ?backoff, "loading the model again failed");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(MAX_RELOAD_BACKOFF);
                    }
                }
            }
            if let Some(o) = self.observer.get() {
                o.restarted();
            }
            alive.send_replace(true);
            tracing::info!("model loaded again: SERVING");
        }
    }

    fn run(&self, encoder: &SentenceEncoder, runner: &Runner, alive: &watch::Sender<bool>) {
        let observer = &self.observer;
        let max_batch = self.max_batch;
        let mut meter = RateMeter::default();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        // Declared after `pending`, so dropped (on a panic) before it.
        let _down = DownOnPanic(alive);
        loop {
            // Block only when there is nothing to do; otherwise take whatever else has arrived.
            if pending.is_empty() {
                match self.rx.recv() {
                    Ok(job) => pending.push_back(Pending::new(job)),
                    Err(_) => return, // every handle dropped: shut down
                }
            }
            while let Ok(job) = self.rx.try_recv() {
                pending.push_back(Pending::new(job));
            }
            // Before spending model time: drop jobs whose caller went away, fail those past their deadline.
            let now = Instant::now();
            let mut live = VecDeque::with_capacity(pending.len());
            for p in pending.drain(..) {
                if p.reply.is_closed() {
                    continue;
                }
                if p.deadline.is_some_and(|d| d <= now) {
                    if let Some(o) = observer.get() {
                        o.expired();
                    }
                    p.fail(EmbedError::DeadlineExceeded);
                    continue;
                }
                live.push_back(p);
            }
            pending = live;
            if pending.is_empty() {
                continue;
            }

            // Fill one batch: whole small jobs first-come first-served, then a slice of the next large job.
            let mut taken: Vec<(usize, usize)> = Vec::new(); // (job position, texts taken)
            let mut room = max_batch;
            for (pos, p) in pending.iter().enumerate() {
                if room == 0 {
                    break;
                }
                let n = p.remaining().min(room);
                taken.push((pos, n));
                room -= n;
            }
            // Set before `texts` borrows the jobs; building it is a few pointer copies.
            let started = Instant::now();
            for &(pos, _) in &taken {
                pending[pos].started.get_or_insert(started);
            }
            // Texts their caller did not tokenise (large jobs) are tokenised here, a batch at a time.
            let mut tokenised = Ok(());
            for &(pos, n) in &taken {
                let Pending {
                    texts,
                    ids,
                    order,
                    cursor,
                    ..
                } = &mut pending[pos];
                ids.resize(texts.len(), Vec::new());
                for &i in &order[*cursor..*cursor + n] {
                    // Never empty once tokenised: [CLS] and [SEP] are always there.
                    if ids[i].is_empty() {
                        match encoder.tokenize(&texts[i]) {
                            Ok(v) => ids[i] = v,
                            Err(e) => tokenised = Err(e),
                        }
                    }
                }
            }
            if let Err(e) = tokenised {
                for &(pos, _) in taken.iter().rev() {
                    if let Some(p) = pending.remove(pos) {
                        p.fail(e.clone());
                    }
                }
                continue;
            }
            let mut texts: Vec<Text> = Vec::with_capacity(max_batch - room);
            for &(pos, n) in &taken {
                let p = &pending[pos];
                texts.extend(p.order[p.cursor..p.cursor + n].iter().map(|&i| Text {
                    text: p.texts[i].as_str(),
                    ids: p.ids[i].as_slice(),
                }));
            }
            if let Some(o) = observer.get() {
                o.batch(texts.len());
            }
            self.faults.on_thread(texts.iter().map(|t| t.text));
            let tokens = taken.iter().any(|&(pos, _)| pending[pos].wants_tokens());
            let faults = &self.faults;
            let forward = |texts: &[Text]| -> Tokens {
                faults.in_forward(texts.iter().map(|t| t.text));
                let ids: Vec<&[u32]> = texts.iter().map(|t| t.ids).collect();
                if tokens {
                    encoder.embed_ids_with_tokens(&ids)
                } else {
                    encoder.embed_ids(&ids).map(|v| {
                        v.into_iter()
                            .map(|sentence| TokenEmbedding {
                                ids: Vec::new(),
                                tokens: Vec::new(),
                                sentence,
                            })
                            .collect()
                    })
                }
            };
            // A panic inside a forward pass (a bug, an allocation failure) fails this batch's requests, not
            // the model thread: the thread goes on with the next batch, so one bad batch never leaves the
            // service refusing everything while its health says SERVING.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runner.run(&texts, &forward)
            }))
            .unwrap_or_else(|panic| {
                let what = panic_message(&*panic);
                tracing::error!(error = %what, batch = texts.len(), "forward pass panicked; batch failed");
                Err(EmbedError::Panicked(what))
            });
            let took = started.elapsed();
            tracing::trace!(
                batch = texts.len(),
                micros = took.as_micros() as u64,
                "forward"
            );
            if result.is_ok() {
                let work = texts
                    .iter()
                    .map(|t| admission::cost(t.text, encoder.max_tokens()))
                    .sum();
                meter.record(work, took, &self.load);
            }
            drop(texts);

            match result {
                Ok(vectors) => {
                    let mut vectors = vectors.into_iter();
                    for &(pos, n) in &taken {
                        let p = &mut pending[pos];
                        for k in 0..n {
                            let i = p.order[p.cursor + k];
                            if let Some(mut v) = vectors.next() {
                                // Plain jobs want the sentence vector only: free the token rows now.
                                if !p.wants_tokens() {
                                    v.tokens = Vec::new();
                                    v.ids = Vec::new();
                                }
                                p.out[i] = v;
                            }
                        }
                        p.cursor += n;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "embedding batch failed");
                    for &(pos, _) in taken.iter().rev() {
                        if let Some(p) = pending.remove(pos) {
                            p.fail(e.clone());
                        }
                    }
                    continue;
                }
            }
            // Reply to finished jobs; move a partly done large job behind newer arrivals (round robin).
            let mut still = VecDeque::with_capacity(pending.len());
            let mut rotated = Vec::new();
            for (pos, p) in pending.into_iter().enumerate() {
                if p.remaining() == 0 {
                    p.finish(observer.get());
                } else if taken.iter().any(|&(t, _)| t == pos) {
                    rotated.push(p);
                } else {
                    still.push_back(p);
                }
            }
            still.extend(rotated);
            pending = still;
        }
    }
}

/// What a panic said, for the log and the batch's error.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

//! The model thread: a bounded queue in front of one [`SentenceEncoder`], forming batches from whatever is
//! waiting (the text-embeddings-inference design, simplified). The model never runs on the async runtime's
//! worker threads; async callers await a oneshot reply.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{EmbedError, SentenceEncoder, TokenEmbedding};
use semroute_kernels::Team;

type Vectors = Result<Vec<Vec<f32>>, EmbedError>;
type Tokens = Result<Vec<TokenEmbedding>, EmbedError>;

/// Where a job's results go: sentence vectors only, or token vectors too (`aggregation: late`). A batch
/// that holds any token job runs the token-returning forward pass for all of its texts; its sentence
/// vectors are the same, so plain jobs in it are not affected.
enum Reply {
    Vectors(oneshot::Sender<Vectors>),
    Tokens(oneshot::Sender<Tokens>),
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
            Reply::Vectors(r) => r.send(Err(e)).map_err(drop),
            Reply::Tokens(r) => r.send(Err(e)).map_err(drop),
        };
    }
}

/// A request's place in the queue, held from admission until its job is answered, fails or is dropped
/// (its caller left): `queue_capacity` bounds every request not yet answered, whether it waits in the
/// channel or in the batcher, not only what one channel holds between two forward passes.
struct Admitted(Option<Arc<AtomicUsize>>);

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

struct Job {
    texts: Vec<String>,
    reply: Reply,
    /// `None` for the service's own jobs (index builds), which wait instead of being refused.
    slot: Admitted,
    /// When it was queued: its queue time is measured from here.
    queued_at: Instant,
}

/// Receives the model thread's timings (the service's metrics). Called on the model thread and at the
/// door, so an implementation must be cheap and must not block.
pub trait EmbedObserver: Send + Sync {
    /// A forward pass ran over `texts` texts.
    fn batch(&self, texts: usize);
    /// A request was answered: it waited `queued` before its first forward pass began, then `forward`
    /// until its last one ended. Only requests (not the service's own jobs) are reported.
    fn request(&self, queued: Duration, forward: Duration);
    /// A request was refused at the door because the queue was full.
    fn refused(&self);
}

/// The observer, set once the service has one; shared by every handle and the model thread.
type ObserverSlot = Arc<OnceLock<Arc<dyn EmbedObserver>>>;

/// A job being worked through in chunks. Large jobs (an index build) are sorted by length so each chunk
/// pads little, and are interleaved with small ones so live requests are not stuck behind a rebuild.
struct Pending {
    texts: Vec<String>,
    /// Indices into `texts`, shortest first; `cursor` is how far we got.
    order: Vec<usize>,
    cursor: usize,
    out: Vec<TokenEmbedding>,
    reply: Reply,
    /// Released when this is dropped (answered, failed or abandoned).
    _slot: Admitted,
    queued_at: Instant,
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
            _slot: job.slot,
            queued_at: job.queued_at,
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
            _slot,
            queued_at,
            started,
            ..
        } = self;
        let request = _slot.0.is_some();
        drop(_slot);
        if let (Some(o), Some(started), true) = (observer, started, request) {
            o.request(
                started.saturating_duration_since(queued_at),
                started.elapsed(),
            );
        }
        let _ = match reply {
            Reply::Vectors(r) => r
                .send(Ok(out.into_iter().map(|t| t.sentence).collect()))
                .map_err(drop),
            Reply::Tokens(r) => r.send(Ok(out)).map_err(drop),
        };
    }

    /// Fails the caller, releasing the place in the queue first (see [`Self::finish`]).
    fn fail(self, e: EmbedError) {
        let Pending { reply, _slot, .. } = self;
        drop(_slot);
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

/// A cheap, cloneable handle to the model thread.
#[derive(Clone)]
pub struct Embedder {
    tx: SyncSender<Job>,
    capacity: usize,
    /// Requests admitted and not yet answered.
    queued: Arc<AtomicUsize>,
    info: Arc<ModelInfo>,
    tokenizer: Arc<tokenizers::Tokenizer>,
    observer: ObserverSlot,
}

impl Embedder {
    /// Moves `encoder` onto its own thread (and a rayon pool of `threads` for candle's kernels) and returns a
    /// handle. At most `queue_capacity` requests wait; more are refused with [`EmbedError::Overloaded`].
    pub fn start(
        encoder: SentenceEncoder,
        max_batch: usize,
        queue_capacity: usize,
        threads: usize,
    ) -> Result<Self, EmbedError> {
        let info = Arc::new(ModelInfo {
            dim: encoder.dim(),
            max_tokens: encoder.max_tokens(),
            dir: encoder.dir().to_path_buf(),
            identity: encoder.identity().to_string(),
        });
        let load_err = |what: &str, e: std::io::Error| EmbedError::Load {
            what: what.into(),
            reason: e.to_string(),
        };
        // Our kernels split each call over a spinning team (see `kernels::team`); candle's kernels use rayon,
        // and running the forward pass inside the pool they parallelise over avoids the calling thread
        // competing with the pool's spinning workers. Only the one the backend uses gets threads.
        let threads = threads.max(1);
        let runner = if encoder.uses_kernels() {
            Runner::Team(
                Team::new(threads, "semroute-model").map_err(|e| load_err("model threads", e))?,
            )
        } else {
            Runner::Rayon(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("semroute-model-{i}"))
                    .build()
                    .map_err(|e| EmbedError::Load {
                        what: "model thread pool".into(),
                        reason: e.to_string(),
                    })?,
            )
        };
        let tokenizer = Arc::new(encoder.tokenizer().clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(queue_capacity);
        let observer = ObserverSlot::default();
        let thread_observer = observer.clone();
        std::thread::Builder::new()
            .name("semroute-model".into())
            .spawn(move || run(encoder, runner, rx, max_batch.max(1), thread_observer))
            .map_err(|e| load_err("model thread", e))?;
        Ok(Self {
            tx,
            capacity: queue_capacity,
            queued: Arc::new(AtomicUsize::new(0)),
            info,
            tokenizer,
            observer,
        })
    }

    /// Reports the model thread's timings, batch sizes and refusals to `observer` from now on. Only the
    /// first call has an effect (one service, one set of metrics).
    pub fn set_observer(&self, observer: Arc<dyn EmbedObserver>) {
        let _ = self.observer.set(observer);
    }

    /// Requests admitted and not yet answered (the service's own jobs, such as index builds, not counted).
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn overloaded(&self) -> EmbedError {
        if let Some(o) = self.observer.get() {
            o.refused();
        }
        EmbedError::Overloaded {
            capacity: self.capacity,
        }
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
            .map(|t| {
                self.tokenizer
                    .encode(t.as_str(), true)
                    .map(|e| e.get_ids().len())
                    .map_err(|e| EmbedError::Tokenize(e.to_string()))
            })
            .collect()
    }

    fn submit(
        &self,
        texts: Vec<String>,
        admit: bool,
    ) -> Result<oneshot::Receiver<Vectors>, EmbedError> {
        let (reply, rx) = oneshot::channel();
        self.send(texts, Reply::Vectors(reply), admit)?;
        Ok(rx)
    }

    fn submit_tokens(
        &self,
        texts: Vec<String>,
        admit: bool,
    ) -> Result<oneshot::Receiver<Tokens>, EmbedError> {
        let (reply, rx) = oneshot::channel();
        self.send(texts, Reply::Tokens(reply), admit)?;
        Ok(rx)
    }

    /// Queues a job. A request (`admit`) takes a place or is refused at once with
    /// [`EmbedError::Overloaded`]; the service's own jobs (index builds, from blocking code) wait for room.
    fn send(&self, texts: Vec<String>, reply: Reply, admit: bool) -> Result<(), EmbedError> {
        if !admit {
            let job = Job {
                texts,
                reply,
                slot: Admitted(None),
                queued_at: Instant::now(),
            };
            return self.tx.send(job).map_err(|_| EmbedError::Stopped);
        }
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        let slot = Admitted(Some(self.queued.clone()));
        if before >= self.capacity {
            return Err(self.overloaded());
        }
        let job = Job {
            texts,
            reply,
            slot,
            queued_at: Instant::now(),
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            // Admitted but the channel is momentarily full of the service's own jobs: refuse too.
            Err(TrySendError::Full(_)) => Err(self.overloaded()),
            Err(TrySendError::Disconnected(_)) => Err(EmbedError::Stopped),
        }
    }

    /// Like [`Self::embed`], also returning each text's token vectors (see
    /// [`SentenceEncoder::embed_with_tokens`]); the late-interaction rule needs them.
    pub async fn embed_tokens(&self, texts: Vec<String>) -> Tokens {
        let rx = self.submit_tokens(texts, true)?;
        rx.await.map_err(|_| EmbedError::Stopped)?
    }

    /// Like [`Self::embed_blocking`], also returning each text's token vectors. Must not be called from an
    /// async task.
    pub fn embed_tokens_blocking(&self, texts: Vec<String>) -> Tokens {
        let rx = self.submit_tokens(texts, false)?;
        rx.blocking_recv().map_err(|_| EmbedError::Stopped)?
    }

    /// Embeds `texts` (any number; large sets are chunked) from async code without blocking the runtime.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rx = self.submit(texts, true)?;
        rx.await.map_err(|_| EmbedError::Stopped)?
    }

    /// Embeds `texts` from synchronous code. Must not be called from an async task.
    pub fn embed_blocking(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rx = self.submit(texts, false)?;
        rx.blocking_recv().map_err(|_| EmbedError::Stopped)?
    }
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
    fn run(&self, texts: &[&str], forward: &(dyn Fn(&[&str]) -> Tokens + Sync)) -> Tokens {
        match self {
            Runner::Team(team) if team.threads() > 1 && texts.len() >= DATA_PARALLEL_MIN_BATCH => {
                let parts = team.threads().min(texts.len());
                // Shortest first, dealt round robin: every thread gets a similar mix of lengths, so the
                // shares take about the same time.
                let mut order: Vec<usize> = (0..texts.len()).collect();
                order.sort_by_key(|&i| texts[i].len());
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
                        let batch: Vec<&str> = chunk.iter().map(|&j| texts[j]).collect();
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

fn run(
    encoder: SentenceEncoder,
    runner: Runner,
    rx: Receiver<Job>,
    max_batch: usize,
    observer: ObserverSlot,
) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    loop {
        // Block only when there is nothing to do; otherwise take whatever else has arrived.
        if pending.is_empty() {
            match rx.recv() {
                Ok(job) => pending.push_back(Pending::new(job)),
                Err(_) => return, // every handle dropped: shut down
            }
        }
        while let Ok(job) = rx.try_recv() {
            pending.push_back(Pending::new(job));
        }
        // Drop jobs whose caller went away (cancelled request) before spending model time on them.
        pending.retain(|p| !p.reply.is_closed());

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
        let mut texts: Vec<&str> = Vec::with_capacity(max_batch - room);
        for &(pos, n) in &taken {
            let p = &pending[pos];
            texts.extend(
                p.order[p.cursor..p.cursor + n]
                    .iter()
                    .map(|&i| p.texts[i].as_str()),
            );
        }
        if let Some(o) = observer.get() {
            o.batch(texts.len());
        }
        let tokens = taken.iter().any(|&(pos, _)| pending[pos].wants_tokens());
        let forward = |texts: &[&str]| -> Tokens {
            if tokens {
                encoder.embed_with_tokens(texts)
            } else {
                encoder.embed(texts).map(|v| {
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
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            tracing::error!(error = %what, batch = texts.len(), "forward pass panicked; batch failed");
            Err(EmbedError::Panicked(what))
        });
        tracing::trace!(
            batch = texts.len(),
            micros = started.elapsed().as_micros() as u64,
            "forward"
        );
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

//! The messages between the page and the model's worker (`crate::worker`): JSON in a
//! `{json, bytes}` object (`crate::envelope`), with a task file's bytes beside it.
//!
//! Plain data, without the browser: the host tests compile it too (`tests/web_text.rs`).
//!
//! The page sends a [`Call`] (a request and its id) and gets one [`Event::Reply`] with the
//! same id; the worker also pushes what happens meanwhile (status, loading and adaptation
//! progress, a lost device, a panic) as other [`Event`]s.

use polytask_core::eval::predict::Entity;
use polytask_core::fewshot::adapt::AdaptMode;
use polytask_core::io::task_file::TaskMeta;
use serde::{Deserialize, Serialize};

/// Which backend the worker runs on (what it can do: `crate::device`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// `webgpu` or `cpu` (the `data-backend` the tests read).
    pub label: String,
    /// What the page shows: the backend, and why the CPU when it is the CPU.
    pub detail: String,
    /// A software WebGPU adapter (compiles kernels for minutes): the watchdog waits longer.
    pub software: bool,
    /// Threads of the CPU backend (the threaded flavour's pool; 1 otherwise and on WebGPU).
    pub threads: usize,
}

/// The backend asked for (`crate::device`): by the page (`Auto`), by the user's switch,
/// or by `?backend=`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Choice {
    /// WebGPU on a hardware adapter that has what burn's kernels need, else the CPU.
    Auto,
    Cpu,
    /// WebGPU whenever the browser can give it, even a software adapter.
    WebGpu,
}

/// A request and the id its reply carries.
#[derive(Debug, Serialize, Deserialize)]
pub struct Call {
    pub id: u32,
    pub request: Request,
}

/// What the page asks the worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Bring up the device and load the bundle.
    Start {
        choice: Choice,
        bundle_base: String,
        /// Why WebGPU failed in this browser before, if it did (the page remembers it).
        webgpu_failure: Option<String>,
    },
    /// Every loaded task's prediction for a text.
    Predict { text: String },
    /// Teach a new task; the reply carries its task file.
    Adapt(AdaptRequest),
    /// Stop the adaptation under way after its current step.
    Cancel,
    /// Load the task file in the bytes (named `file_name` in messages), in place of a
    /// task of the same name.
    LoadTask { file_name: String },
    /// Remove a task from the model (deleted or renamed in the library).
    DropTask { name: String },
    /// Destroy the worker's WebGPU devices (the browser tests' way to lose one).
    LoseDevice,
}

/// A new task: labels, examples (`(text, label index)`), held-out examples to score, and
/// how to adapt.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdaptRequest {
    pub name: String,
    pub labels: Vec<String>,
    pub rows: Vec<(String, usize)>,
    pub heldout: Vec<(String, usize)>,
    pub mode: AdaptMode,
    /// Cross-entropy steps.
    pub steps: usize,
    /// Supervised contrastive steps before them (`AdaptConfig::contrastive_steps`).
    #[serde(default)]
    pub contrastive_steps: usize,
}

/// What the worker tells the page.
#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    /// The worker is up: calls may follow.
    Up,
    /// The status line (`starting…`, `loading the model…`).
    Status(String),
    /// The backend the worker runs on.
    Backend(Backend),
    /// Loading the bundle: bytes done of total, and a note.
    Loading { done: u64, total: u64, note: String },
    /// One adaptation step done (1-based) of `steps`, and its loss.
    Step {
        done: usize,
        steps: usize,
        loss: f32,
    },
    /// Something the user should know about the adaptation under way (truncated examples).
    Notice(String),
    /// A WebGPU device of the worker was lost, and why.
    DeviceLost(String),
    /// The worker panicked (it is dead now). `webgpu`: the failure to remember, when it
    /// was WebGPU's.
    Panic {
        text: String,
        webgpu: Option<String>,
    },
    /// The reply to call `id`.
    Reply { id: u32, reply: Reply },
}

/// The reply to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Started(Started),
    Predicted(Result<TryResult, String>),
    /// The task file is in the bytes.
    Adapted(Result<Adapted, String>),
    TaskLoaded(Result<TaskInfo, String>),
    /// `Cancel`, `DropTask` and `LoseDevice`.
    Done,
}

/// How a start ended.
#[derive(Debug, Serialize, Deserialize)]
pub enum Started {
    /// The model is loaded; `base`: its base model's identity (the bundle's `base`, which
    /// a task file must name to load onto it).
    Ready {
        base: String,
    },
    DeviceCheckFailed(String),
    BundleFailed(String),
}

/// A task loaded onto the model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    pub labels: usize,
}

impl From<&TaskMeta> for TaskInfo {
    fn from(meta: &TaskMeta) -> Self {
        TaskInfo {
            name: meta.name.clone(),
            labels: meta.labels.len(),
        }
    }
}

/// A task taught in the worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct Adapted {
    pub task: TaskInfo,
    /// How long the adaptation took.
    pub seconds: f64,
    /// Held-out accuracy and the number of held-out examples, when there were some.
    pub heldout: Option<(f64, usize)>,
}

/// One task's prediction for the Try-it box.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub task: String,
    /// The best label of a sentence task (empty for a token task).
    pub label: String,
    pub confidence: f32,
    /// Every label's probability (sentence tasks).
    pub probabilities: Vec<(String, f32)>,
    /// The entities of a token task, `None` for a sentence task.
    pub entities: Option<Vec<Entity>>,
}

/// What the Try-it box shows for one text.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TryResult {
    pub text: String,
    pub predictions: Vec<Prediction>,
    /// The text was cut to the tokenizer's maximum length.
    pub truncated_to: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_json() {
        let call = Call {
            id: 7,
            request: Request::Adapt(AdaptRequest {
                name: "travel".into(),
                labels: vec!["a".into(), "b".into()],
                rows: vec![("x".into(), 0), ("y".into(), 1)],
                heldout: vec![],
                mode: AdaptMode::Adapters,
                steps: 10,
                contrastive_steps: 5,
            }),
        };
        let back: Call = serde_json::from_str(&serde_json::to_string(&call).unwrap()).unwrap();
        assert_eq!(back.id, 7);
        assert!(matches!(back.request, Request::Adapt(a) if a.rows[1] == ("y".into(), 1)));
        let event = Event::Reply {
            id: 3,
            reply: Reply::Predicted(Ok(TryResult {
                text: "t".into(),
                predictions: vec![Prediction {
                    task: "slots".into(),
                    label: String::new(),
                    confidence: 0.0,
                    probabilities: vec![],
                    entities: Some(vec![Entity {
                        kind: "city".into(),
                        text: "boston".into(),
                        start: 3,
                        end: 9,
                        confidence: 0.5,
                    }]),
                }],
                truncated_to: None,
            })),
        };
        let json = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}

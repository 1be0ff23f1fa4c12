//! The teachers of `core-train distill`: saved models loaded once, checked against the
//! student's tasks and tokenizer before any step, and run without autodiff on each batch
//! ([`polytask_core::train::distill`] holds the loss).
//!
//! A recipe names one teacher for every task (`distill.teacher`, e.g. a multi-task run's
//! `best/`), or one per task (`distill.teachers`, e.g. the single-task runs: many teachers
//! → one multi-task student); a directory that teaches several tasks is loaded and run
//! once. `distill.student_layers` makes the student the teacher itself with fewer blocks
//! (deep → shallow, DistilBERT's initialisation), heads included.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use polytask_core::data::features::{Encoded, collate};
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::train::distill::{DistillConfig, ModelShape, TeacherOutputs, teacher_outputs};
use polytask_core::{BertModel, Tokenizer};

use crate::recipe::DistillSection;
use crate::run_dir;

/// One loaded teacher.
struct Teacher {
    dir: PathBuf,
    /// On the evaluation device, without autodiff or dropout.
    model: MultiTaskModel,
    config_json: String,
}

/// Every teacher of a run, and which teaches which of the student's tasks.
pub struct Teachers {
    pub config: DistillConfig,
    teachers: Vec<Teacher>,
    /// Per student task: `(teacher, the teacher's index of that task)`; `None`: the task
    /// learns from its gold labels only.
    by_task: Vec<Option<(usize, usize)>>,
    student_layers: Option<Vec<usize>>,
}

impl Teachers {
    /// Loads the teachers `section` names and checks each against the student's tasks
    /// (`spec`: same kind, same labels in the same order) and tokenizer (same word pieces),
    /// and that they take inputs of `max_len` pieces. Errors name the recipe field.
    pub fn load(
        section: &DistillSection,
        recipe_file: &str,
        spec: &MultiTaskSpec,
        tokenizer: &Tokenizer,
        max_len: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut teachers: Vec<Teacher> = Vec::new();
        let mut by_task = Vec::with_capacity(spec.tasks.len());
        for task in &spec.tasks {
            let (field, dir) = match (section.teachers.get(&task.name), &section.teacher) {
                (Some(dir), _) => (format!("distill.teachers.{}", task.name), dir),
                (None, Some(dir)) => ("distill.teacher".to_string(), dir),
                (None, None) => {
                    eprintln!(
                        "note: task {} has no teacher; it learns from its gold labels only",
                        task.name
                    );
                    by_task.push(None);
                    continue;
                }
            };
            let at = |what: String| format!("{recipe_file}: {field} = {}: {what}", dir.display());
            let k = match teachers.iter().position(|t| t.dir == *dir) {
                Some(k) => k,
                None => {
                    let teacher = load_teacher(dir, tokenizer, max_len, device)
                        .map_err(|e| anyhow::anyhow!("{}", at(format!("{e:#}"))))?;
                    teachers.push(teacher);
                    teachers.len() - 1
                }
            };
            let model = &teachers[k].model;
            let Ok(t) = model.task_index(&task.name) else {
                let names: Vec<&str> = model.tasks().iter().map(|t| t.name.as_str()).collect();
                bail!(at(format!(
                    "the teacher has no task {:?} (it has {names:?})",
                    task.name
                )));
            };
            let theirs = &model.tasks()[t];
            if theirs.kind != task.kind {
                bail!(at(format!(
                    "the teacher's task {} is a {} task, the student's a {} task",
                    task.name, theirs.kind, task.kind
                )));
            }
            if theirs.labels != task.labels {
                let first = (0..theirs.labels.len().max(task.labels.len()))
                    .find(|&i| theirs.labels.get(i) != task.labels.get(i))
                    .expect("the lists differ");
                bail!(at(format!(
                    "the teacher's task {} has {} labels and the student's {} (from the \
                     training data); label #{first} is {:?} there and {:?} here. A teacher \
                     must have been trained on the same label set",
                    task.name,
                    theirs.labels.len(),
                    task.labels.len(),
                    theirs.labels.get(first),
                    task.labels.get(first)
                )));
            }
            by_task.push(Some((k, t)));
        }
        let needs_one = section.student_layers.is_some() || section.config().needs_states();
        if needs_one && teachers.len() != 1 {
            bail!(
                "{recipe_file}: distill.student_layers, distill.hidden and distill.attention need \
                 exactly one teacher (distill.teacher), but the tasks have {}",
                teachers.len()
            );
        }
        Ok(Teachers {
            config: section.config(),
            teachers,
            by_task,
            student_layers: section.student_layers.clone(),
        })
    }

    /// The student's encoder when it is made from the teacher (`student_layers`): the
    /// teacher's embeddings and the named blocks, with its `config.json` saying so.
    pub fn student_encoder(&self) -> Result<Option<(BertModel, String)>> {
        let (Some(layers), [teacher]) = (&self.student_layers, self.teachers.as_slice()) else {
            return Ok(None);
        };
        let bert = teacher
            .model
            .bert
            .clone()
            .keep_layers(layers)
            .with_context(|| format!("distill.student_layers = {layers:?}"))?;
        let mut config: serde_json::Value = serde_json::from_str(&teacher.config_json)
            .with_context(|| format!("{}/config.json: not JSON", teacher.dir.display()))?;
        config["num_hidden_layers"] = layers.len().into();
        Ok(Some((bert, serde_json::to_string_pretty(&config)?)))
    }

    /// Copies the teacher's head of each task into a student made from the teacher.
    pub fn copy_heads(&self, student: &mut MultiTaskModel) {
        if self.student_layers.is_none() {
            return;
        }
        for (t, who) in self.by_task.iter().enumerate() {
            if let Some((k, theirs)) = who {
                student.heads[t] = self.teachers[*k].model.heads[*theirs].clone();
            }
        }
    }

    /// Checks the loss settings against the teacher and the student (layers, widths,
    /// heads); errors name the recipe field.
    pub fn check(&self, student: &MultiTaskModel, recipe_file: &str) -> Result<()> {
        let student = ModelShape::of(student);
        for t in &self.teachers {
            self.config
                .check(ModelShape::of(&t.model), student)
                .map_err(|e| anyhow::anyhow!("{recipe_file}: distill.{e}"))?;
        }
        Ok(())
    }

    /// A line for the start of a run: who teaches what.
    pub fn describe(&self, names: &[String]) -> String {
        let mut parts = Vec::new();
        for (k, t) in self.teachers.iter().enumerate() {
            let tasks: Vec<&str> = self
                .by_task
                .iter()
                .enumerate()
                .filter(|(_, w)| w.is_some_and(|(j, _)| j == k))
                .map(|(i, _)| names[i].as_str())
                .collect();
            parts.push(format!(
                "{} ({} blocks) → {}",
                t.dir.display(),
                t.model.bert.num_layers(),
                tasks.join(", ")
            ));
        }
        let c = &self.config;
        format!(
            "distilling from {}; T {}, alpha {}, {} hidden and {} attention matches",
            parts.join("; "),
            c.temperature,
            c.alpha,
            c.hidden.len(),
            c.attention.len()
        )
    }

    /// The teachers' outputs for one batch of the student's `tasks`, on `device` (no
    /// autodiff): each teacher needed runs once.
    pub fn outputs(
        &self,
        items: &[&Encoded],
        tasks: &[usize],
        pad_id: u32,
        device: &Device,
    ) -> Result<TeacherOutputs> {
        let batch = collate(items, pad_id, device)?;
        let mut out = TeacherOutputs {
            logits: vec![None; tasks.len()],
            hidden: Vec::new(),
            attentions: Vec::new(),
        };
        for (k, teacher) in self.teachers.iter().enumerate() {
            let theirs: Vec<Option<usize>> = tasks
                .iter()
                .map(|&t| self.by_task[t].filter(|(j, _)| *j == k).map(|(_, i)| i))
                .collect();
            let states = self.config.needs_states();
            // With alpha 0 and no intermediate match nothing of the teacher is used.
            let soft = self.config.alpha > 0.0 && theirs.iter().any(Option::is_some);
            if !soft && !states {
                continue;
            }
            let said = teacher_outputs(&teacher.model, batch.input.clone(), &theirs, &self.config);
            for (slot, z) in out.logits.iter_mut().zip(said.logits) {
                if z.is_some() {
                    *slot = z;
                }
            }
            if states {
                out.hidden = said.hidden;
                out.attentions = said.attentions;
            }
        }
        Ok(out)
    }
}

/// A saved model as a teacher: its tokenizer must be the student's, and it must take
/// inputs of `max_len` pieces.
fn load_teacher(
    dir: &Path,
    student: &Tokenizer,
    max_len: usize,
    device: &Device,
) -> Result<Teacher> {
    let (saved, tokenizer, resolved) = run_dir::load(dir, device)?;
    if tokenizer.vocab_size() != student.vocab_size() {
        bail!(
            "its tokenizer has {} word pieces and the student's {}; a teacher must use the \
             student's tokenizer",
            tokenizer.vocab_size(),
            student.vocab_size()
        );
    }
    if let Some(id) = (0..student.vocab_size() as u32)
        .find(|&id| tokenizer.id_to_token(id) != student.id_to_token(id))
    {
        bail!(
            "its tokenizer differs from the student's: word piece #{id} is {:?} there and {:?} \
             here; a teacher must use the student's tokenizer",
            tokenizer.id_to_token(id).unwrap_or_default(),
            student.id_to_token(id).unwrap_or_default()
        );
    }
    let positions = saved.model.bert.max_positions();
    if positions < max_len {
        bail!("it takes at most {positions} word pieces, but model.max_len is {max_len}");
    }
    let config_json = std::fs::read_to_string(resolved.join("config.json"))
        .with_context(|| format!("{}/config.json: cannot read", resolved.display()))?;
    Ok(Teacher {
        dir: dir.to_path_buf(),
        model: saved.model.valid(),
        config_json,
    })
}

//! The teachers of `core-train distill`: saved models loaded once, checked against the
//! student's tasks and tokenizer before any step, and run without autodiff on each batch
//! ([`polytask_core::train::distill`] holds the loss).
//!
//! A recipe names one teacher for every task (`distill.teacher`, e.g. a multi-task run's
//! `best/`), or one per task (`distill.teachers`, e.g. the single-task runs: many teachers
//! → one multi-task student); a directory that teaches several tasks is loaded and run
//! once. `distill.student_layers` makes the student the teacher itself with fewer blocks
//! (deep → shallow, DistilBERT's initialisation), heads included. `distill.cache` keeps
//! the teachers' logits on the training sentences on disk ([`cache`]).

pub mod cache;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use polytask_core::data::features::{Encoded, collate};
use polytask_core::error::Error;
use polytask_core::model::multitask::{MultiTaskModel, MultiTaskSpec};
use polytask_core::model::task::TaskKind;
use polytask_core::train::distill::{DistillConfig, ModelShape, TeacherOutputs, teacher_outputs};
use polytask_core::{BertModel, Tokenizer};

use crate::corpus::EncodedSource;
use crate::recipe::DistillSection;
use crate::run_dir;
use cache::CachedTask;

/// One loaded teacher.
struct Teacher {
    dir: PathBuf,
    /// `dir` resolved to the directory that holds the model files.
    resolved: PathBuf,
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
    /// With `distill.cache`: per corpus, per task of the corpus, the teacher's logits on
    /// its training examples (`None`: no teacher for that task).
    cached: Option<Vec<Vec<Option<CachedTask>>>>,
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
            cached: None,
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

    /// Computes the teachers' logits on every corpus's training examples once, or reads
    /// them from the cache directory `dir` ([`cache`]); [`outputs`](Self::outputs) then
    /// reads them instead of running the teachers. Refused with intermediate matches (the
    /// cache keeps logits only).
    pub fn fill_cache(
        &mut self,
        dir: &Path,
        data: &[EncodedSource],
        names: &[String],
        batch_size: usize,
        pad_id: u32,
        device: &Device,
    ) -> Result<()> {
        cache::check_config(&self.config, dir)?;
        if self.config.alpha == 0.0 {
            eprintln!("note: distill.alpha is 0: the teachers' outputs are not used, nor cached");
            return Ok(());
        }
        let mut cached: Vec<Vec<Option<CachedTask>>> = data
            .iter()
            .map(|src| src.tasks.iter().map(|_| None).collect())
            .collect();
        // Each teacher's files are read and hashed once, whatever the number of corpora.
        let fingerprints: Vec<Vec<u8>> = self
            .teachers
            .iter()
            .map(|t| cache::fingerprint(&t.resolved))
            .collect::<Result<_>>()?;
        for (s, src) in data.iter().enumerate() {
            for (k, teacher) in self.teachers.iter().enumerate() {
                let theirs = self.taught_by(k, &src.tasks);
                if theirs.iter().all(Option::is_none) {
                    continue;
                }
                let slots: Vec<(usize, usize, usize)> = theirs
                    .iter()
                    .enumerate()
                    .filter_map(|(slot, i)| i.map(|i| (slot, src.tasks[slot], i)))
                    .collect();
                let key_tasks: Vec<(String, usize)> = slots
                    .iter()
                    .map(|&(_, t, i)| (names[t].clone(), i))
                    .collect();
                let key = cache::key(&fingerprints[k], &key_tasks, &src.train);
                let path = cache::path(dir, &key);
                let wanted: Vec<(String, TaskKind, usize)> = slots
                    .iter()
                    .map(|&(_, _, i)| {
                        let task = &teacher.model.tasks()[i];
                        (task.name.clone(), task.kind, task.labels.len())
                    })
                    .collect();
                let what = format!(
                    "{} on the {} training examples of {}",
                    teacher.dir.display(),
                    src.train.len(),
                    key_tasks
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let tasks = match cache::read(&path, &key, &wanted, &src.train)? {
                    Some(tasks) => {
                        eprintln!("teacher outputs: read {} ({what})", path.display());
                        tasks
                    }
                    None => {
                        let started = Instant::now();
                        let tasks =
                            self.compute(teacher, &theirs, &src.train, batch_size, pad_id, device)?;
                        let named: Vec<(&str, &CachedTask)> =
                            wanted.iter().map(|w| w.0.as_str()).zip(&tasks).collect();
                        cache::write(&path, &key, &named, &teacher.dir)?;
                        eprintln!(
                            "teacher outputs: computed {what} in {:.0} s, wrote {}",
                            started.elapsed().as_secs_f64(),
                            path.display()
                        );
                        tasks
                    }
                };
                for (&(slot, _, _), task) in slots.iter().zip(tasks) {
                    cached[s][slot] = Some(task);
                }
            }
        }
        self.cached = Some(cached);
        Ok(())
    }

    /// For each of the student's `tasks`, teacher `k`'s index of that task when `k` teaches
    /// it (`None`: another teacher or none).
    fn taught_by(&self, k: usize, tasks: &[usize]) -> Vec<Option<usize>> {
        tasks
            .iter()
            .map(|&t| self.by_task[t].filter(|(j, _)| *j == k).map(|(_, i)| i))
            .collect()
    }

    /// One teacher's logits for the slots `theirs` over `examples`, in batches of similar
    /// length.
    fn compute(
        &self,
        teacher: &Teacher,
        theirs: &[Option<usize>],
        examples: &[Encoded],
        batch_size: usize,
        pad_id: u32,
        device: &Device,
    ) -> Result<Vec<CachedTask>> {
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.sort_by_key(|&i| examples[i].encoding.ids.len());
        let mut rows: Vec<Vec<Vec<f32>>> = theirs
            .iter()
            .flatten()
            .map(|_| vec![Vec::new(); examples.len()])
            .collect();
        let bar = crate::progress::steps_bar(examples.len() as u64, 0);
        bar.set_message(format!("teacher outputs of {}", teacher.dir.display()));
        for chunk in order.chunks(batch_size.max(1)) {
            let items: Vec<&Encoded> = chunk.iter().map(|&i| &examples[i]).collect();
            let batch = collate(&items, pad_id, device)?;
            let said = teacher_outputs(&teacher.model, batch.input, theirs, &self.config);
            for (z, (i, rows)) in said
                .logits
                .into_iter()
                .flatten()
                .zip(theirs.iter().flatten().zip(rows.iter_mut()))
            {
                let task = &teacher.model.tasks()[*i];
                let values = z
                    .try_into_vec_as::<f32>()
                    .map_err(Error::read_back("the teacher's outputs"))?;
                let kept =
                    cache::keep_rows(task.kind, task.labels.len(), &values, &items, batch.seq_len);
                for (&j, r) in chunk.iter().zip(kept) {
                    rows[j] = r;
                }
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(theirs
            .iter()
            .flatten()
            .zip(rows)
            .map(|(&i, rows)| {
                let task = &teacher.model.tasks()[i];
                CachedTask::new(task.kind, task.labels.len(), rows)
            })
            .collect())
    }

    /// The teachers' outputs for one batch of the student's `tasks`: the examples `idx` of
    /// corpus `corpus` (`items`), on `device` (no autodiff). Read from the cache when there
    /// is one; otherwise each teacher needed runs once.
    pub fn outputs(
        &self,
        corpus: usize,
        idx: &[usize],
        items: &[&Encoded],
        tasks: &[usize],
        pad_id: u32,
        device: &Device,
    ) -> Result<TeacherOutputs> {
        let mut out = TeacherOutputs {
            logits: vec![None; tasks.len()],
            hidden: Vec::new(),
            attentions: Vec::new(),
        };
        if let Some(cached) = &self.cached {
            let seq_len = items
                .iter()
                .map(|e| e.encoding.ids.len())
                .max()
                .unwrap_or(0);
            for (slot, c) in cached[corpus].iter().enumerate() {
                out.logits[slot] = c.as_ref().map(|c| c.batch(idx, items, seq_len, device));
            }
            return Ok(out);
        }
        let batch = collate(items, pad_id, device)?;
        for (k, teacher) in self.teachers.iter().enumerate() {
            let theirs = self.taught_by(k, tasks);
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
        resolved,
        model: saved.model.valid(),
        config_json,
    })
}

//! Teaching a new task in the worker: adapted one step per turn of its event loop (so a
//! Cancel or a prediction gets in between steps), each step's loss sent to the page; the
//! held-out examples scored; the task installed on the model and written as a task file.

use polytask_core::BertInput;
use polytask_core::eval::metrics::accuracy;
use polytask_core::fewshot::adapt::{AdaptConfig, Learner, check_loss};
use polytask_core::io::task_file::{TASK_FORMAT, TaskMeta, save_task_async};

use super::{busy_since, cancelled, install, post, with_loaded, yield_now};
use crate::device::read_f32;
use crate::page::now_ms;
use crate::protocol::{AdaptRequest, Adapted, Event};

thread_local! {
    /// An adaptation has run in this worker: its code is warm.
    static ADAPTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Adapts the task of `request` on the loaded model with core's adaptation settings
/// (`AdaptConfig::default()`, as `core-train adapt`) but for what the user chose: the mode
/// and the numbers of steps (contrastive, then cross-entropy). Returns what the page shows and the task file.
pub async fn teach(request: AdaptRequest) -> Result<(Adapted, Vec<u8>), String> {
    let AdaptRequest {
        name,
        labels,
        rows,
        heldout,
        mode,
        steps,
        contrastive_steps,
    } = request;
    ADAPTED.set(true);
    let (encoder, device, base) =
        with_loaded(|l| (l.encoder.clone(), l.device.clone(), l.base.clone()))?;
    let config = AdaptConfig {
        mode,
        steps,
        contrastive_steps,
        ..AdaptConfig::default()
    };
    let steps = contrastive_steps + steps;
    let texts: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let ids: Vec<usize> = rows.iter().map(|r| r.1).collect();
    let batch = encoder.tokenizer.batch(&texts).map_err(|e| e.to_string())?;
    let cut: Vec<usize> = batch
        .truncated
        .iter()
        .enumerate()
        .filter(|(_, c)| **c)
        .map(|(i, _)| i + 1)
        .collect();
    if !cut.is_empty() {
        let max = encoder.tokenizer.max_len();
        let note =
            format!("Example(s) {cut:?} are longer than {max} word pieces and were truncated.");
        post(&Event::Notice(note), None);
    }
    let t0 = now_ms();
    let learner = Learner::new(&encoder.model, &config).map_err(|e| e.to_string())?;
    let support = learner.frozen(BertInput::from_batch(&batch, &device));
    let t_frozen = now_ms();
    let mut session = learner
        .session(support, &ids, labels.len())
        .map_err(|e| e.to_string())?;
    // Where the time goes (`?log=debug`): the frozen blocks and the prototypes, then
    // the steps.
    let t_setup = now_ms();
    while !session.is_done() {
        let step = session.steps_done();
        let loss = read_f32(session.step()).await?[0];
        check_loss(step, loss).map_err(|e| format!("{e}. Try fewer steps or the head only."))?;
        post(
            &Event::Step {
                done: step + 1,
                steps,
                loss,
            },
            None,
        );
        yield_now().await;
        if cancelled() && !session.is_done() {
            return Err(format!(
                "Cancelled after {} of {steps} steps: no task was added.",
                step + 1
            ));
        }
    }
    let adapted = session.finish();
    // Wait for the device to finish before stopping the clock.
    let _ = read_f32(adapted.model.head.weight.val().sum()).await?;
    let t_end = now_ms();
    let seconds = (t_end - t0) / 1000.0;
    log::debug!(
        "adapted {} examples in {:.0} ms: setup {:.0} ms (frozen blocks {:.0} ms, prototypes \
         and the adapting copy {:.0} ms), {steps} steps {:.0} ms",
        rows.len(),
        t_end - t0,
        t_setup - t0,
        t_frozen - t0,
        t_setup - t_frozen,
        t_end - t_setup
    );
    let meta = TaskMeta {
        format: TASK_FORMAT.into(),
        name,
        labels,
        config,
        first: adapted.first,
        base,
        max_len: encoder.tokenizer.max_len(),
    };
    let mut heldout_acc = None;
    if !heldout.is_empty() {
        let texts: Vec<&str> = heldout.iter().map(|r| r.0.as_str()).collect();
        let batch = encoder.tokenizer.batch(&texts).map_err(|e| e.to_string())?;
        let pred: Vec<usize> = adapted
            .model
            .predict(BertInput::from_batch(&batch, &device))
            .into_data_async()
            .await
            .map_err(|e| format!("{e:?}"))?
            .try_into_vec_as::<i64>()
            .map_err(|e| format!("{e:?}"))?
            .into_iter()
            .map(|p| p as usize)
            .collect();
        let gold: Vec<usize> = heldout.iter().map(|r| r.1).collect();
        heldout_acc = Some((accuracy(&pred, &gold), heldout.len()));
    }
    let file = save_task_async(&adapted.model, &meta)
        .await
        .map_err(|e| format!("Adapted, but the task could not be written: {e}"))?;
    let task = install(adapted.model, meta)?;
    Ok((
        Adapted {
            task,
            seconds,
            heldout: heldout_acc,
        },
        file,
    ))
}

/// Warms up the CPU backend's adaptation once the visitor has left the worker idle for a
/// second: two steps of a throwaway four-label task with adapters, as the page's first
/// adaptation would run them. The browser runs new wasm code on its baseline compiler
/// and compiles the hot functions with its optimizing one only once they have run a
/// while (and a call already running keeps the slow code), so a visitor's first
/// adaptation in a fresh page took 15-20% longer than the next ones. The warm-up gives
/// way to any call: it stops between steps once one has come in. Nothing of it is kept.
pub async fn warm_up_when_idle() {
    const IDLE_MS: f64 = 1000.0;
    loop {
        super::sleep_ms(IDLE_MS as i32).await;
        if ADAPTED.get() {
            return;
        }
        if busy_since().is_some_and(|last| now_ms() - last >= IDLE_MS) {
            break;
        }
    }
    let started = busy_since();
    let t0 = now_ms();
    let Ok((encoder, device)) = with_loaded(|l| (l.encoder.clone(), l.device.clone())) else {
        return;
    };
    let config = AdaptConfig {
        mode: polytask_core::fewshot::adapt::AdaptMode::Adapters,
        steps: 2,
        contrastive_steps: 0,
        ..AdaptConfig::default()
    };
    // A batch shaped like a visitor's first task: 20 short sentences, 4 labels.
    let texts: Vec<String> = (0..20)
        .map(|i| format!("example number {i} of the warm up task, label {}", i % 4))
        .collect();
    let labels: Vec<usize> = (0..20).map(|i| i % 4).collect();
    let Ok(batch) = encoder.tokenizer.batch(&texts) else {
        return;
    };
    let Ok(learner) = Learner::new(&encoder.model, &config) else {
        return;
    };
    let support = learner.frozen(BertInput::from_batch(&batch, &device));
    let Ok(mut session) = learner.session(support, &labels, 4) else {
        return;
    };
    while !session.is_done() {
        let _ = read_f32(session.step()).await;
        yield_now().await;
        if busy_since() != started {
            log::debug!("warm-up stopped for a call after {:.0} ms", now_ms() - t0);
            return;
        }
    }
    log::debug!("adaptation warmed up in {:.0} ms", now_ms() - t0);
}

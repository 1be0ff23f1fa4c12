//! Adapting to a new task from a few examples: the settings `adapt` and `eval-fewshot`
//! share, and texts tokenized for the encoder.

use anyhow::Result;
use burn::tensor::Device;
use polytask_core::fewshot::adapt::{AdaptConfig, AdaptMode};
use polytask_core::{BertInput, SentenceEncoder};

/// What adapts (`adapt --mode`): the head only, adapters + head, or the top blocks + head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Head,
    Adapters,
    Full,
}

impl From<ModeArg> for AdaptMode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Head => AdaptMode::Head,
            ModeArg::Adapters => AdaptMode::Adapters,
            ModeArg::Full => AdaptMode::Full,
        }
    }
}

/// Adaptation settings on the command line.
#[derive(clap::Args, Clone, Debug)]
pub struct AdaptFlags {
    /// Optimizer steps on the support set.
    #[arg(long, default_value_t = AdaptConfig::default().steps)]
    pub steps: usize,
    /// Learning rate of adapters / encoder weights.
    #[arg(long, default_value_t = AdaptConfig::default().lr)]
    pub lr: f64,
    /// Learning rate of the head.
    #[arg(long, default_value_t = AdaptConfig::default().head_lr)]
    pub head_lr: f64,
    /// Top encoder blocks that adapt (adapters / full).
    #[arg(long, default_value_t = AdaptConfig::default().layers)]
    pub layers: usize,
    /// Bottleneck width of new adapters.
    #[arg(long, default_value_t = AdaptConfig::default().adapter_size)]
    pub adapter_size: usize,
    /// Support examples per step.
    #[arg(long, default_value_t = AdaptConfig::default().batch_size)]
    pub batch_size: usize,
    /// Logit scale of the prototype head.
    #[arg(long, default_value_t = AdaptConfig::default().scale)]
    pub scale: f64,
    /// Supervised contrastive steps on the support set before the cross-entropy steps
    /// (adapters / full; SetFit-style: same-label examples pulled together, the others
    /// pushed apart; the head is then rebuilt from prototypes).
    #[arg(long, default_value_t = AdaptConfig::default().contrastive_steps)]
    pub contrastive_steps: usize,
    /// Temperature of the contrastive loss.
    #[arg(long, default_value_t = AdaptConfig::default().temperature)]
    pub temperature: f64,
    /// Seeds minibatches and dropout.
    #[arg(long, default_value_t = 0)]
    pub adapt_seed: u64,
}

impl AdaptFlags {
    pub fn config(&self, mode: AdaptMode) -> AdaptConfig {
        AdaptConfig {
            mode,
            steps: self.steps,
            lr: self.lr,
            head_lr: self.head_lr,
            batch_size: self.batch_size,
            layers: self.layers,
            adapter_size: self.adapter_size,
            scale: self.scale,
            contrastive_steps: self.contrastive_steps,
            temperature: self.temperature,
            seed: self.adapt_seed,
        }
    }
}

/// Tokenizes texts onto `device`, noting truncation.
pub fn inputs(encoder: &SentenceEncoder, texts: &[&str], device: &Device) -> Result<BertInput> {
    let batch = encoder.tokenizer.batch(texts)?;
    for (t, cut) in texts.iter().zip(&batch.truncated) {
        if *cut {
            eprintln!(
                "note: longer than {} word pieces, truncated: {:?}",
                encoder.tokenizer.max_len(),
                t.chars().take(60).collect::<String>()
            );
        }
    }
    Ok(BertInput::from_batch(&batch, device))
}

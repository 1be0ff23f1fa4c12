//! BERT hyper-parameters, read from a Hugging Face `config.json`.
//!
//! Only the settings this encoder implements are accepted; anything else (another
//! `position_embedding_type`, an unknown activation, sizes that do not divide) is refused
//! with an error that names the field and its value, rather than silently ignored.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Feed-forward activation of the transformer layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Exact GELU, `x · Φ(x)` with the Gaussian CDF through `erf` (HF `"gelu"`).
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU (HF `"gelu_new"`, `"gelu_pytorch_tanh"`).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    /// Rectified linear unit.
    #[serde(rename = "relu")]
    Relu,
}

/// The hyper-parameters of a BERT encoder, with Hugging Face's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    #[serde(default = "default_model_type")]
    pub model_type: String,
}

fn default_activation() -> Activation {
    Activation::Gelu
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}
fn default_model_type() -> String {
    "bert".into()
}

impl BertConfig {
    /// Parses and validates a Hugging Face `config.json`. `source` names the file in errors.
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let config: BertConfig = serde_json::from_str(text).map_err(|e| Error::Config {
            file: source.into(),
            message: format!("line {}, column {}: {e}", e.line(), e.column()),
        })?;
        config.validate(source)?;
        Ok(config)
    }

    /// Checks that this encoder implements every setting. `source` names the file in errors.
    pub fn validate(&self, source: &str) -> Result<()> {
        let fail = |message: String| {
            Err(Error::Config {
                file: source.into(),
                message,
            })
        };
        if !matches!(self.model_type.as_str(), "bert" | "") {
            return fail(format!(
                "model_type = {:?} is not supported (only \"bert\")",
                self.model_type
            ));
        }
        if self.position_embedding_type != "absolute" {
            return fail(format!(
                "position_embedding_type = {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value == 0 {
                return fail(format!("{field} = 0 must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return fail(format!(
                "hidden_size = {} is not a multiple of num_attention_heads = {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return fail(format!("{field} = {p} must be in [0, 1)"));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return fail(format!(
                "layer_norm_eps = {} must be positive",
                self.layer_norm_eps
            ));
        }
        if self.pad_token_id >= self.vocab_size {
            return fail(format!(
                "pad_token_id = {} is outside the vocabulary of {}",
                self.pad_token_id, self.vocab_size
            ));
        }
        Ok(())
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// A tiny configuration for tests: the same architecture at toy sizes.
    pub fn tiny(vocab_size: usize) -> Self {
        BertConfig {
            vocab_size,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 64,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
            model_type: "bert".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{"_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
      "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
      "gradient_checkpointing": false, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
      "hidden_size": 384, "initializer_range": 0.02, "intermediate_size": 1536,
      "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
      "num_attention_heads": 12, "num_hidden_layers": 6, "pad_token_id": 0,
      "position_embedding_type": "absolute", "transformers_version": "4.8.2",
      "type_vocab_size": 2, "use_cache": true, "vocab_size": 30522}"#;

    #[test]
    fn parses_minilm_config() {
        let c = BertConfig::from_json(MINILM, "config.json").unwrap();
        assert_eq!(c.hidden_size, 384);
        assert_eq!(c.num_hidden_layers, 6);
        assert_eq!(c.head_dim(), 32);
        assert_eq!(c.hidden_act, Activation::Gelu);
    }

    #[test]
    fn refuses_relative_positions() {
        let text = MINILM.replace("\"absolute\"", "\"relative_key\"");
        let err = BertConfig::from_json(&text, "m/config.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("m/config.json"), "{err}");
        assert!(err.contains("position_embedding_type"), "{err}");
        assert!(err.contains("relative_key"), "{err}");
    }

    #[test]
    fn refuses_heads_that_do_not_divide() {
        let text = MINILM.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7");
        let err = BertConfig::from_json(&text, "config.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_attention_heads = 7"), "{err}");
    }

    #[test]
    fn refuses_unknown_activation_and_reports_position() {
        let text = MINILM.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"swish\"");
        let err = BertConfig::from_json(&text, "config.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("swish") && err.contains("line"), "{err}");
    }

    #[test]
    fn refuses_missing_sizes() {
        let err = BertConfig::from_json("{\"vocab_size\": 10}", "c.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hidden_size"), "{err}");
    }
}

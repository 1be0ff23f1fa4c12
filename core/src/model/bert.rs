//! A BERT encoder whose module tree mirrors Hugging Face's `BertModel`, so that the
//! parameter paths of a checkpoint (`encoder.layer.3.attention.output.LayerNorm.weight`)
//! map onto fields one to one. The only rename is `attention.self`, a Rust keyword, which
//! is the field `self_` here (see [`crate::io::checkpoint`]).
//!
//! ```text
//! BertModel
//! ├── embeddings: word + position + token type → LayerNorm → dropout
//! ├── encoder.layer[i]: BertLayer (post-LN)
//! │   ├── attention.self_: multi-head self-attention with a padding mask
//! │   ├── attention.output: dense → dropout → [adapter] → LayerNorm(x + residual)
//! │   ├── intermediate: dense → GELU
//! │   └── output: dense → dropout → [adapter] → LayerNorm(x + residual)
//! └── pooler: dense → tanh on the [CLS] state (HF's pooler; unused by mean pooling)
//! ```
//!
//! The optional bottleneck adapters ([`Adapter`], Houlsby et al. 2019) are not part of
//! Hugging Face's BERT; [`BertModel::add_adapters`] inserts them for parameter-efficient
//! adaptation, and a checkpoint that holds `…adapter.down.weight` tensors gets them on load.
//!
//! Dropout is active only when the model runs on an autodiff device (training); inference
//! on a plain device is deterministic.
#![allow(non_snake_case)] // `LayerNorm` fields keep Hugging Face's parameter names.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, relu, softmax};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::data::tokenizer::Batch;
use crate::model::config::{Activation, BertConfig};

/// Token ids, segment ids and padding mask of a batch, on a device.
#[derive(Debug, Clone)]
pub struct BertInput {
    /// `[batch, seq]` word-piece ids.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, seq]` segment ids (all 0 for single sentences).
    pub token_type_ids: Tensor<2, Int>,
    /// `[batch, seq]` 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor<2, Int>,
    /// `[batch, seq]` word shapes ([`crate::model::casing`]), used by an encoder with a casing
    /// table ([`from_batch`](Self::from_batch) always fills them in); with `None` nothing
    /// is added, as with a fresh table.
    pub shapes: Option<Tensor<2, Int>>,
}

impl BertInput {
    /// Moves a tokenized batch onto `device`.
    pub fn from_batch(batch: &Batch, device: &Device) -> Self {
        let shape = [batch.batch_size(), batch.seq_len()];
        let ints = |v: &[u32]| {
            let data: Vec<i64> = v.iter().map(|&x| x as i64).collect();
            Tensor::<2, Int>::from_data(TensorData::new(data, shape), device)
        };
        BertInput {
            input_ids: ints(&batch.input_ids),
            token_type_ids: ints(&batch.token_type_ids),
            attention_mask: ints(&batch.attention_mask),
            shapes: Some(ints(&batch.shapes)),
        }
    }
}

/// What the encoder returns.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// `[batch, seq, hidden]` hidden states of the last layer.
    pub last_hidden_state: Tensor<3>,
    /// `[batch, seq]` padding mask as floats (1 real, 0 padding), for pooling.
    pub mask: Tensor<2>,
}

fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    // BERT's initialisation: N(0, 0.02) weights, zero bias.
    LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device)
}

/// `layer` over the last dimension of `x`, as one `[rows, d_in] × [d_in, d_out]` product
/// over all leading dimensions. burn's `Linear::forward` keeps a `[batch, seq, d_in]` input
/// batched when `seq` fills its row tile (64, 128), and the backward of that batched product
/// computes the weight's gradient once per sequence (`[batch, d_in, d_out]`, each with an
/// inner dimension of `seq`) and then sums them; folded, it is one product over all
/// `batch · seq` rows, with no per-sequence copies to write, clear and sum.
pub fn dense<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    if D <= 2 {
        return layer.forward(x);
    }
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = layer.forward(x.reshape([rows, d_in]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

fn layer_norm(config: &BertConfig, device: &Device) -> LayerNorm {
    LayerNormConfig::new(config.hidden_size)
        .with_epsilon(config.layer_norm_eps)
        .init(device)
}

fn embedding(n: usize, d: usize, device: &Device) -> Embedding {
    EmbeddingConfig::new(n, d)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device)
}

/// Word, position and token-type embeddings, summed and normalised; plus, optionally, a
/// learned embedding of each piece's word shape ([`crate::model::casing`]; not part of Hugging
/// Face's BERT, saved as `embeddings.casing_embeddings.weight`).
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub casing_embeddings: Option<Embedding>,
    pub LayerNorm: LayerNorm,
    pub dropout: Dropout,
}

impl BertEmbeddings {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        BertEmbeddings {
            word_embeddings: embedding(config.vocab_size, h, device),
            position_embeddings: embedding(config.max_position_embeddings, h, device),
            token_type_embeddings: embedding(config.type_vocab_size, h, device),
            casing_embeddings: None,
            LayerNorm: layer_norm(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    /// `[batch, seq]` ids (and word shapes, for a model with a casing table) →
    /// `[batch, seq, hidden]`. Positions count from 0.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        shapes: Option<Tensor<2, Int>>,
    ) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .unsqueeze_dim::<2>(0)
            .expand([batch, seq]);
        let mut x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(token_type_ids);
        if let (Some(table), Some(shapes)) = (&self.casing_embeddings, shapes) {
            x = x + table.forward(shapes);
        }
        self.dropout.forward(self.LayerNorm.forward(x))
    }
}

/// What [`BertModel::forward_traced`] returns: the output and every intermediate state.
#[derive(Debug, Clone)]
pub struct TracedOutput {
    pub output: EncoderOutput,
    /// `num_layers + 1` states `[batch, seq, hidden]`: the embeddings', then each block's.
    pub hidden: Vec<Tensor<3>>,
    /// Each block's attention distributions `[batch, heads, seq, seq]` (when asked).
    pub attentions: Vec<Tensor<4>>,
}

/// Multi-head scaled dot-product self-attention (HF `BertSelfAttention`).
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
    pub num_heads: usize,
    pub head_dim: usize,
}

impl BertSelfAttention {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        BertSelfAttention {
            query: linear(h, h, device),
            key: linear(h, h, device),
            value: linear(h, h, device),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            num_heads: config.num_attention_heads,
            head_dim: config.head_dim(),
        }
    }

    /// `x`: `[batch, seq, hidden]`; `mask_bias`: `[batch, 1, 1, seq]`, 0 for real tokens
    /// and a large negative number for padding. Returns `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let (q, k, v) = self.project(x, |t| t);
        self.attend(q, k, v, mask_bias)
    }

    /// [`forward`](Self::forward) on packed states `[1, real, hidden]` ([`Packing`]): the
    /// projections on the real tokens alone, the attention itself in the padded layout.
    fn forward_packed(&self, x: Tensor<3>, packing: &Packing, mask_bias: Tensor<4>) -> Tensor<3> {
        let (q, k, v) = self.project(x, |t| packing.unpack(t));
        packing.pack(self.attend(q, k, v, mask_bias))
    }

    /// Attention of `[batch, heads, seq, head_dim]` queries, keys and values →
    /// `[batch, seq, hidden]`.
    fn attend(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask_bias: Tensor<4>) -> Tensor<3> {
        let [batch, heads, seq, head_dim] = q.dims();
        let context = if q.device().is_autodiff() {
            // Training: the explicit product, for attention dropout and the backward.
            self.dropout
                .forward(self.probabilities(q, k, mask_bias))
                .matmul(v)
        } else {
            // Inference (no dropout off an autodiff device): the backend's fused attention;
            // on the CPU one tile per batch × head, scale + bias + softmax in one pass.
            let options = AttentionModuleOptions {
                scale: Some(self.scale()),
                softcap: None,
                is_causal: false,
            };
            let bias = mask_bias.expand([batch, 1, seq, seq]);
            attention(q, k, v, None, Some(bias), options)
        };
        context
            .swap_dims(1, 2)
            .reshape([batch, seq, heads * head_dim])
    }

    /// [`forward`](Self::forward) that also returns the attention distributions
    /// `[batch, heads, seq, seq]` (each query's softmax over the keys, before dropout), by
    /// the explicit product on every device (distillation matches them).
    pub fn forward_with_probs(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> (Tensor<3>, Tensor<4>) {
        let [batch, seq, hidden] = x.dims();
        let (q, k, v) = self.project(x, |t| t);
        let probs = self.probabilities(q, k, mask_bias);
        let context = self.dropout.forward(probs.clone()).matmul(v);
        (context.swap_dims(1, 2).reshape([batch, seq, hidden]), probs)
    }

    /// Queries, keys and values split into heads: `[batch, heads, seq, head_dim]` each.
    /// `padded` lays each projection out as `[batch, seq, hidden]` (the identity unless
    /// `x` is packed).
    fn project(
        &self,
        x: Tensor<3>,
        padded: impl Fn(Tensor<3>) -> Tensor<3>,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let heads = |t: Tensor<3>| {
            let t = padded(t);
            let [batch, seq, _] = t.dims();
            t.reshape([batch, seq, self.num_heads, self.head_dim])
                .swap_dims(1, 2)
        };
        let q = heads(dense(&self.query, x.clone()));
        let k = heads(dense(&self.key, x.clone()));
        (q, k, heads(dense(&self.value, x)))
    }

    /// `1 / √head_dim`.
    fn scale(&self) -> f64 {
        (self.head_dim as f64).sqrt().recip()
    }

    /// Each query's softmax over the keys: `[batch, heads, seq, seq]`.
    fn probabilities(&self, q: Tensor<4>, k: Tensor<4>, mask_bias: Tensor<4>) -> Tensor<4> {
        softmax(q.matmul(k.swap_dims(2, 3)) * self.scale() + mask_bias, 3)
    }
}

/// A bottleneck adapter: `x + up(gelu(down(x)))` with `down: hidden → bottleneck` and
/// `up: bottleneck → hidden`. `up` starts at zero, so a fresh adapter is the identity and
/// adding one does not change the model's outputs.
#[derive(Module, Debug)]
pub struct Adapter {
    pub down: Linear,
    pub up: Linear,
}

impl Adapter {
    pub fn new(hidden: usize, bottleneck: usize, device: &Device) -> Self {
        Adapter {
            down: linear(hidden, bottleneck, device),
            up: LinearConfig::new(bottleneck, hidden)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        x.clone() + dense(&self.up, gelu(dense(&self.down, x)))
    }

    /// The bottleneck width.
    pub fn size(&self) -> usize {
        self.down.weight.dims()[1]
    }
}

/// Projection back to the hidden size with a residual and post-LayerNorm. The same shape
/// serves as HF's `BertSelfOutput` (after attention) and `BertOutput` (after the FFN).
#[derive(Module, Debug)]
pub struct BertResidualOutput {
    pub dense: Linear,
    pub LayerNorm: LayerNorm,
    pub dropout: Dropout,
    /// Optional bottleneck adapter, applied before the residual sum.
    pub adapter: Option<Adapter>,
}

impl BertResidualOutput {
    pub fn new(d_in: usize, config: &BertConfig, device: &Device) -> Self {
        BertResidualOutput {
            dense: linear(d_in, config.hidden_size, device),
            LayerNorm: layer_norm(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            adapter: None,
        }
    }

    /// `x`: `[batch, seq, d_in]`, `residual`: `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let mut x = self.dropout.forward(dense(&self.dense, x));
        if let Some(adapter) = &self.adapter {
            x = adapter.forward(x);
        }
        self.LayerNorm.forward(x + residual)
    }
}

/// Self-attention followed by its output projection (HF `BertAttention`).
#[derive(Module, Debug)]
pub struct BertAttention {
    /// HF's `attention.self`.
    pub self_: BertSelfAttention,
    pub output: BertResidualOutput,
}

/// The feed-forward expansion with its activation (HF `BertIntermediate`).
#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
    #[module(skip)]
    pub activation: Activation,
}

impl BertIntermediate {
    /// `[batch, seq, hidden]` → `[batch, seq, intermediate]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = dense(&self.dense, x);
        match self.activation {
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_approximate(x),
            Activation::Relu => relu(x),
        }
    }
}

/// One transformer block (HF `BertLayer`).
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertResidualOutput,
}

impl BertLayer {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        BertLayer {
            attention: BertAttention {
                self_: BertSelfAttention::new(config, device),
                output: BertResidualOutput::new(config.hidden_size, config, device),
            },
            intermediate: BertIntermediate {
                dense: linear(config.hidden_size, config.intermediate_size, device),
                activation: config.hidden_act,
            },
            output: BertResidualOutput::new(config.intermediate_size, config, device),
        }
    }

    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let attended = self.attention.self_.forward(x.clone(), mask_bias);
        self.feed_forward(attended, x)
    }

    /// [`forward`](Self::forward) on packed states `[1, real, hidden]` ([`Packing`]).
    fn forward_packed(&self, x: Tensor<3>, packing: &Packing, mask_bias: Tensor<4>) -> Tensor<3> {
        let attended = self
            .attention
            .self_
            .forward_packed(x.clone(), packing, mask_bias);
        self.feed_forward(attended, x)
    }

    /// [`forward`](Self::forward) and the block's attention distributions
    /// `[batch, heads, seq, seq]`.
    pub fn forward_with_probs(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> (Tensor<3>, Tensor<4>) {
        let (attended, probs) = self
            .attention
            .self_
            .forward_with_probs(x.clone(), mask_bias);
        (self.feed_forward(attended, x), probs)
    }

    /// The rest of the block after self-attention.
    fn feed_forward(&self, attended: Tensor<3>, x: Tensor<3>) -> Tensor<3> {
        let x = self.attention.output.forward(attended, x);
        let expanded = self.intermediate.forward(x.clone());
        self.output.forward(expanded, x)
    }
}

/// The stack of transformer blocks (HF `BertEncoder`).
#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

/// Dense + tanh over the first token (HF `BertPooler`).
#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
}

impl BertPooler {
    /// `[batch, seq, hidden]` → `[batch, hidden]`.
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [batch, _, h] = hidden.dims();
        let first = hidden.narrow(1, 0, 1).reshape([batch, h]);
        self.dense.forward(first).tanh()
    }
}

/// The whole encoder (HF `BertModel`).
#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: BertPooler,
}

/// The real (unpadded) positions of a `[batch, seq]` batch. Packed, the states of a batch
/// are `[1, real, hidden]`: its real tokens one after the other, so that the position-wise
/// layers skip the padding; only attention needs the padded layout back.
struct Packing {
    /// Flat indices (`b × seq + t`) of the real positions.
    index: Tensor<1, Int>,
    batch: usize,
    seq: usize,
}

impl Packing {
    /// The packing of a float padding mask where it pays: on the CPU backend, whose mask
    /// reads back at no cost (a GPU would stall), when at least a tenth of the positions
    /// are padding (as in a support set of sentences of different lengths).
    fn worth_it(mask: &Tensor<2>) -> Option<Self> {
        if mask.device().without_autodiff() != Device::flex() {
            return None;
        }
        let [batch, seq] = mask.dims();
        let flags = mask.clone().inner().try_into_vec_as::<f32>().ok()?;
        let index: Vec<i64> = (0..flags.len() as i64)
            .filter(|&i| flags[i as usize] > 0.5)
            .collect();
        if index.is_empty() || index.len() * 10 > flags.len() * 9 {
            return None;
        }
        let n = index.len();
        Some(Packing {
            index: Tensor::from_data(TensorData::new(index, [n]), &mask.device()),
            batch,
            seq,
        })
    }

    /// `[batch, seq, d]` → `[1, real, d]`.
    fn pack(&self, x: Tensor<3>) -> Tensor<3> {
        let d = x.dims()[2];
        x.reshape([self.batch * self.seq, d])
            .select(0, self.index.clone())
            .unsqueeze_dim(0)
    }

    /// `[1, real, d]` → `[batch, seq, d]`, zeros at the padded positions.
    fn unpack(&self, x: Tensor<3>) -> Tensor<3> {
        let [_, real, d] = x.dims();
        Tensor::zeros([self.batch * self.seq, d], &x.device())
            .select_assign(
                0,
                self.index.clone(),
                x.reshape([real, d]),
                IndexingUpdateOp::Add,
            )
            .reshape([self.batch, self.seq, d])
    }
}

/// Additive attention bias from a padding mask: 0 where `mask` is 1, −10⁴ where it is 0.
/// `[batch, seq]` → `[batch, 1, 1, seq]`.
pub fn attention_bias(mask: Tensor<2>) -> Tensor<4> {
    let [batch, seq] = mask.dims();
    ((mask - 1.0) * 1.0e4).reshape([batch, 1, 1, seq])
}

impl BertConfig {
    /// A freshly initialised encoder with this configuration.
    pub fn init(&self, device: &Device) -> BertModel {
        BertModel {
            embeddings: BertEmbeddings::new(self, device),
            encoder: BertEncoder {
                layer: (0..self.num_hidden_layers)
                    .map(|_| BertLayer::new(self, device))
                    .collect(),
            },
            pooler: BertPooler {
                dense: linear(self.hidden_size, self.hidden_size, device),
            },
        }
    }
}

impl BertModel {
    /// Runs the encoder. Input tensors are `[batch, seq]`; the output holds
    /// `[batch, seq, hidden]` states and the float padding mask.
    pub fn forward(&self, input: BertInput) -> EncoderOutput {
        let n = self.num_layers();
        self.forward_until(input, n)
    }

    /// Embeddings and the first `layers` blocks: the states a later
    /// [`forward_from`](Self::forward_from)`(layers, ..)` continues from. Lets a caller
    /// compute the frozen bottom of the encoder once and train only the top.
    pub fn forward_until(&self, input: BertInput, layers: usize) -> EncoderOutput {
        let mask = input.attention_mask.float();
        let x = self
            .embeddings
            .forward(input.input_ids, input.token_type_ids, input.shapes);
        self.run_blocks(
            0..layers.min(self.num_layers()),
            EncoderOutput {
                last_hidden_state: x,
                mask,
            },
        )
    }

    /// Runs blocks `first..` on states that have been through blocks `..first`.
    pub fn forward_from(&self, first: usize, states: EncoderOutput) -> EncoderOutput {
        self.run_blocks(first..self.num_layers(), states)
    }

    /// Runs blocks `blocks` (e.g. `2..4`) on states that have been through the blocks
    /// below them.
    ///
    /// Where a batch holds enough padding, on the CPU, every position-wise layer (the
    /// linears, layer norms, GELU, dropout: almost all the work) runs on its real tokens
    /// alone ([`Packing`]); the states at padded positions then come out as zeros.
    pub fn run_blocks(
        &self,
        blocks: std::ops::Range<usize>,
        states: EncoderOutput,
    ) -> EncoderOutput {
        let bias = attention_bias(states.mask.clone());
        let layers = &self.encoder.layer[blocks];
        let mut x = states.last_hidden_state;
        // No blocks (the embeddings alone): nothing to pack, and no mask to read back.
        let packing = (!layers.is_empty())
            .then(|| Packing::worth_it(&states.mask))
            .flatten();
        match packing {
            Some(packing) => {
                let mut packed = packing.pack(x);
                for layer in layers {
                    packed = layer.forward_packed(packed, &packing, bias.clone());
                }
                x = packing.unpack(packed);
            }
            None => {
                for layer in layers {
                    x = layer.forward(x, bias.clone());
                }
            }
        }
        EncoderOutput {
            last_hidden_state: x,
            mask: states.mask,
        }
    }

    /// The encoder with every intermediate state (HF `output_hidden_states`): `hidden[0]`
    /// is the embeddings' output and `hidden[i]` block `i`'s (1-based), each `[batch, seq,
    /// hidden]`; with `attentions`, `attentions[i - 1]` is block `i`'s attention
    /// distributions `[batch, heads, seq, seq]` (HF `output_attentions`).
    pub fn forward_traced(&self, input: BertInput, attentions: bool) -> TracedOutput {
        let mask = input.attention_mask.float();
        let bias = attention_bias(mask.clone());
        let mut x = self
            .embeddings
            .forward(input.input_ids, input.token_type_ids, input.shapes);
        let mut hidden = vec![x.clone()];
        let mut probs = Vec::new();
        for layer in &self.encoder.layer {
            if attentions {
                let (y, p) = layer.forward_with_probs(x, bias.clone());
                probs.push(p);
                x = y;
            } else {
                x = layer.forward(x, bias.clone());
            }
            hidden.push(x.clone());
        }
        TracedOutput {
            output: EncoderOutput {
                last_hidden_state: x,
                mask,
            },
            hidden,
            attentions: probs,
        }
    }

    /// The encoder with only the blocks `keep` (0-based, in that order): a shallower
    /// student initialised from a deeper teacher (DistilBERT keeps every other block).
    /// Each index must name a block and appear once.
    pub fn keep_layers(mut self, keep: &[usize]) -> crate::error::Result<Self> {
        let n = self.num_layers();
        if keep.is_empty() {
            return Err(crate::error::Error::Input(
                "keep at least one block of the encoder".into(),
            ));
        }
        for (i, &k) in keep.iter().enumerate() {
            if k >= n {
                return Err(crate::error::Error::Input(format!(
                    "block {k}: the encoder has blocks 0 to {}",
                    n - 1
                )));
            }
            if keep[..i].contains(&k) {
                return Err(crate::error::Error::Input(format!("block {k} named twice")));
            }
        }
        let mut layers: Vec<Option<BertLayer>> = std::mem::take(&mut self.encoder.layer)
            .into_iter()
            .map(Some)
            .collect();
        self.encoder.layer = keep
            .iter()
            .map(|&k| layers[k].take().expect("each block once"))
            .collect();
        Ok(self)
    }

    /// Number of transformer blocks.
    pub fn num_layers(&self) -> usize {
        self.encoder.layer.len()
    }

    /// Inserts a fresh bottleneck adapter of width `size` after attention and after the FFN
    /// of each of the top `layers` blocks (identity at first; existing ones are kept).
    pub fn add_adapters(mut self, size: usize, layers: usize, device: &Device) -> Self {
        let hidden = self.hidden_size();
        let n = self.num_layers();
        for layer in &mut self.encoder.layer[n.saturating_sub(layers)..] {
            for out in [&mut layer.attention.output, &mut layer.output] {
                if out.adapter.is_none() {
                    out.adapter = Some(Adapter::new(hidden, size, device));
                }
            }
        }
        self
    }

    /// Gives the encoder a casing table ([`crate::model::casing`]) if it has none: all zeros, so
    /// the outputs stay as they were until it is trained.
    pub fn add_casing(&mut self, device: &Device) {
        if self.embeddings.casing_embeddings.is_none() {
            let table = EmbeddingConfig::new(crate::model::casing::NUM_SHAPES, self.hidden_size())
                .with_initializer(Initializer::Zeros)
                .init(device);
            self.embeddings.casing_embeddings = Some(table);
        }
    }

    /// Whether the encoder reads word shapes.
    pub fn has_casing(&self) -> bool {
        self.embeddings.casing_embeddings.is_some()
    }

    /// `(block, adapter width)` of every block with adapters.
    pub fn adapters(&self) -> Vec<(usize, usize)> {
        self.encoder
            .layer
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.output.adapter.as_ref().map(|a| (i, a.size())))
            .collect()
    }

    /// Hidden size of the encoder.
    pub fn hidden_size(&self) -> usize {
        self.pooler.dense.weight.dims()[0]
    }

    /// The largest sequence length the position table allows.
    pub fn max_positions(&self) -> usize {
        self.embeddings.position_embeddings.weight.dims()[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::pooling::mean_pool;

    fn device() -> Device {
        Device::flex()
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn input(ids: &[&[i64]], device: &Device) -> BertInput {
        let seq = ids.iter().map(|r| r.len()).max().unwrap();
        let mut flat = Vec::new();
        let mut mask = Vec::new();
        for row in ids {
            for j in 0..seq {
                flat.push(*row.get(j).unwrap_or(&0));
                mask.push(i64::from(j < row.len()));
            }
        }
        let shape = [ids.len(), seq];
        BertInput {
            input_ids: Tensor::from_data(TensorData::new(flat, shape), device),
            token_type_ids: Tensor::zeros(shape, device),
            attention_mask: Tensor::from_data(TensorData::new(mask, shape), device),
            shapes: None,
        }
    }

    #[test]
    fn output_shape_follows_input() {
        let device = device();
        let model = BertConfig::tiny(50).init(&device);
        let out = model.forward(input(&[&[1, 2, 3], &[4, 5, 6]], &device));
        assert_eq!(out.last_hidden_state.dims(), [2, 3, 16]);
        assert_eq!(model.hidden_size(), 16);
    }

    /// The traced forward gives the plain forward's output, one state per block plus the
    /// embeddings', and attention rows that are distributions with nothing on padding;
    /// a student keeping block 1 of 2 gives what that block gives on the teacher's embeddings.
    #[test]
    fn traced_forward_and_kept_layers() {
        let device = device();
        let model = BertConfig::tiny(50).init(&device);
        let ids = input(&[&[7, 8, 9], &[1, 2]], &device);
        let plain = model.forward(ids.clone());
        let traced = model.forward_traced(ids.clone(), true);
        let v = |t: Tensor<3>| t.try_into_vec_as::<f32>().unwrap();
        // On the real tokens (the plain forward packs them, leaving zeros on padding).
        let real = |t: Tensor<3>| v(t * plain.mask.clone().unsqueeze_dim(2));
        assert!(
            max_abs_diff(
                &real(plain.last_hidden_state.clone()),
                &real(traced.output.last_hidden_state)
            ) < 1e-5
        );
        let layers = model.num_layers();
        assert_eq!(traced.hidden.len(), layers + 1);
        assert_eq!(traced.attentions.len(), layers);
        let [b, heads, s, s2] = traced.attentions[0].dims();
        assert_eq!((b, s, s2), (2, 3, 3));
        let p: Vec<f32> = traced.attentions[0]
            .clone()
            .try_into_vec_as::<f32>()
            .unwrap();
        for row in p.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        // Row 1 is [1, 2, pad]: no attention on the padded key.
        let second = &p[heads * 9..];
        assert!(second.chunks(3).all(|r| r[2] < 1e-6));
        let student = model.clone().keep_layers(&[1]).unwrap();
        assert_eq!(student.num_layers(), 1);
        let bias = attention_bias(ids.attention_mask.clone().float());
        let want = model.encoder.layer[1].forward(traced.hidden[0].clone(), bias);
        let got = student.forward(ids).last_hidden_state;
        assert!(max_abs_diff(&real(want), &real(got)) < 1e-5);
        for bad in [&[][..], &[2], &[0, 0]] {
            assert!(model.clone().keep_layers(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn padding_does_not_change_the_real_tokens() {
        // The same sentence alone and padded beside a longer one must give the same
        // states on its real tokens and the same mean-pooled vector.
        let device = device();
        let model = BertConfig::tiny(50).init(&device);
        let alone = model.forward(input(&[&[7, 8, 9]], &device));
        let padded = model.forward(input(&[&[7, 8, 9], &[1, 2, 3, 4, 5, 6]], &device));
        let a = alone
            .last_hidden_state
            .clone()
            .try_into_vec_as::<f32>()
            .unwrap();
        let p = padded
            .last_hidden_state
            .clone()
            .narrow(0, 0, 1)
            .narrow(1, 0, 3)
            .try_into_vec_as::<f32>()
            .unwrap();
        let max_diff = max_abs_diff(&a, &p);
        assert!(max_diff < 1e-5, "padding leaked into attention: {max_diff}");
        let pa = mean_pool(alone.last_hidden_state, alone.mask)
            .try_into_vec_as::<f32>()
            .unwrap();
        let pp = mean_pool(padded.last_hidden_state, padded.mask)
            .narrow(0, 0, 1)
            .try_into_vec_as::<f32>()
            .unwrap();
        let max_diff = max_abs_diff(&pa, &pp);
        assert!(max_diff < 1e-5, "padding leaked into pooling: {max_diff}");
    }

    /// On the CPU a batch with enough padding runs its position-wise layers on the real
    /// tokens alone: the states of the real tokens, and the gradients of every parameter,
    /// are those of the padded computation; the padding's states are zeros.
    #[test]
    fn packed_blocks_match_the_padded_computation() {
        let device = device().autodiff();
        let model = BertConfig {
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            ..BertConfig::tiny(50)
        }
        .init(&device)
        .add_adapters(4, 1, &device);
        let ids = input(&[&[7, 8, 9, 10, 11], &[1, 2], &[3, 4, 5]], &device);
        let mask = ids.attention_mask.clone().float();
        assert!(Packing::worth_it(&mask).is_some());
        // The padded computation block by block, or the packed one (each its own graph).
        let run = |packed: bool| {
            let embedded = model.forward_until(ids.clone(), 0);
            if packed {
                return model.forward_from(0, embedded).last_hidden_state;
            }
            let bias = attention_bias(mask.clone());
            let mut x = embedded.last_hidden_state;
            for layer in &model.encoder.layer {
                x = layer.forward(x, bias.clone());
            }
            x
        };
        let (padded, packed) = (run(false), run(true));
        let real = mask.clone().unsqueeze_dim::<3>(2);
        let v = |t: Tensor<3>| t.try_into_vec_as::<f32>().unwrap();
        let diff = max_abs_diff(&v(padded.clone() * real.clone()), &v(packed.clone()));
        assert!(diff < 1e-5, "real tokens differ: {diff}");
        let pads = v(packed.clone() * (real.clone() - 1.0));
        assert!(pads.iter().all(|&x| x == 0.0));
        // An upstream gradient on the real tokens only: the same gradients either way.
        let weights = Tensor::<3>::from_data(
            TensorData::new(
                (0..15 * 16).map(|i| (i % 7) as f32 - 3.0).collect(),
                [3, 5, 16],
            ),
            &device,
        ) * real;
        let grads_of = |out: Tensor<3>| {
            let grads = (out * weights.clone()).sum().backward();
            let layer = &model.encoder.layer[1];
            let g = |t: &burn::module::Param<Tensor<2>>| t.val().grad(&grads).unwrap();
            let adapter = layer.output.adapter.as_ref().unwrap();
            [
                g(&layer.attention.self_.query.weight),
                g(&layer.intermediate.dense.weight),
                g(&adapter.up.weight),
                g(&model.encoder.layer[0].output.dense.weight),
            ]
            .map(|t| t.try_into_vec_as::<f32>().unwrap())
        };
        for (k, (a, b)) in grads_of(padded).iter().zip(grads_of(packed)).enumerate() {
            let diff = max_abs_diff(a, &b);
            assert!(diff < 1e-4, "gradient {k} differs: {diff}");
            assert!(a.iter().any(|x| *x != 0.0), "gradient {k} is zero");
        }
        // No packing for a batch without padding.
        let full = input(&[&[1, 2, 3], &[4, 5, 6]], &device)
            .attention_mask
            .float();
        assert!(Packing::worth_it(&full).is_none());
    }

    #[test]
    fn dense_folds_rows_and_matches_the_batched_linear() {
        // 2 × 64 rows: burn keeps this shape batched (64 fills its row tile), so the two
        // paths really differ in how the weight's gradient is formed.
        let device = device().autodiff();
        let layer = LinearConfig::new(8, 5).init(&device);
        let x = Tensor::<3>::from_data(
            TensorData::new(
                (0..2 * 64 * 8)
                    .map(|i| ((i * 37) % 19) as f32 / 9.0 - 1.0)
                    .collect(),
                [2, 64, 8],
            ),
            &device,
        )
        .require_grad();
        let upstream = Tensor::<3>::from_data(
            TensorData::new(
                (0..2 * 64 * 5)
                    .map(|i| ((i * 11) % 13) as f32 - 6.0)
                    .collect(),
                [2, 64, 5],
            ),
            &device,
        );
        let run = |folded: bool| {
            let y = if folded {
                dense(&layer, x.clone())
            } else {
                layer.forward(x.clone())
            };
            assert_eq!(y.dims(), [2, 64, 5]);
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let v = |t: Tensor<2>| t.try_into_vec_as::<f32>().unwrap();
            (
                y.try_into_vec_as::<f32>().unwrap(),
                v(layer.weight.val().grad(&grads).unwrap()),
                layer.bias.as_ref().unwrap().val().grad(&grads).unwrap(),
                x.grad(&grads).unwrap().try_into_vec_as::<f32>().unwrap(),
            )
        };
        let (batched, folded) = (run(false), run(true));
        assert!(max_abs_diff(&batched.0, &folded.0) < 1e-5);
        assert!(max_abs_diff(&batched.1, &folded.1) < 1e-3);
        assert!(folded.1.iter().any(|g| *g != 0.0));
        let bias = |t: Tensor<1>| t.try_into_vec_as::<f32>().unwrap();
        assert!(max_abs_diff(&bias(batched.2), &bias(folded.2)) < 1e-3);
        assert!(max_abs_diff(&batched.3, &folded.3) < 1e-5);
        // Fewer dimensions go straight through.
        let flat = Tensor::<2>::ones([3, 8], &device);
        assert_eq!(dense(&layer, flat).dims(), [3, 5]);
    }

    #[test]
    fn inference_is_deterministic_and_training_uses_dropout() {
        let device = device();
        let model = BertConfig::tiny(50).init(&device);
        let a = model
            .forward(input(&[&[1, 2, 3]], &device))
            .last_hidden_state;
        let b = model
            .forward(input(&[&[1, 2, 3]], &device))
            .last_hidden_state;
        a.clone().into_data().assert_eq(&b.into_data(), true);

        let train_device = device.clone().autodiff();
        let model = model.to_device(&train_device);
        let c = model
            .forward(input(&[&[1, 2, 3]], &train_device))
            .last_hidden_state;
        let diff: f32 = (c.inner() - a).abs().sum().into_scalar();
        assert!(diff > 1e-3, "dropout had no effect on an autodiff device");
    }

    #[test]
    fn parameter_paths_follow_hugging_face() {
        use burn::store::ModuleSnapshot;
        let model = BertConfig::tiny(50).init(&device());
        let names: Vec<String> = model
            .collect(None, None, false)
            .into_iter()
            .map(|t| t.name)
            .collect();
        for expected in [
            "embeddings.word_embeddings.weight",
            "embeddings.LayerNorm.gamma",
            "encoder.layer.1.attention.self_.query.weight",
            "encoder.layer.0.attention.output.LayerNorm.beta",
            "encoder.layer.0.intermediate.dense.bias",
            "encoder.layer.1.output.dense.weight",
            "pooler.dense.weight",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} not in {names:?}"
            );
        }
    }
}

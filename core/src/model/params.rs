//! A module's float parameters by *path* (`bert.encoder.layer.3.output.dense.weight`), the
//! one key that survives rebuilding a model, saving it and loading it back (burn's
//! parameter ids do not). Everything that works on whole models by name goes through
//! here: snapshots and task files, freezing, Reptile's interpolation, AdamW's update.
//!
//! Values are handed out flattened (`[numel]`, without autodiff tracking) and taken back
//! flattened; the parameter keeps its id, shape and `require_grad` flag.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// The dotted path of the module burn is walking.
#[derive(Default)]
struct Path(Vec<String>);

impl Path {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn get(&self) -> String {
        self.0.join(".")
    }
}

fn flatten<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let n = t.shape().num_elements();
    t.reshape([n])
}

struct Visit<F: FnMut(&str, Vec<usize>, Tensor<1>)> {
    path: Path,
    f: F,
}

impl<F: FnMut(&str, Vec<usize>, Tensor<1>)> ModuleVisitor for Visit<F> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param.val().inner();
        (self.f)(&self.path.get(), v.dims().to_vec(), flatten(v));
    }
}

/// Calls `f(path, shape, flat value)` for every float parameter of `module`.
pub fn visit_parameters<M: Module>(module: &M, f: impl FnMut(&str, Vec<usize>, Tensor<1>)) {
    module.visit(&mut Visit {
        path: Path::default(),
        f,
    });
}

/// Every float parameter of `module` by path: (shape, flat values).
pub fn parameters<M: Module>(module: &M) -> BTreeMap<String, (Vec<usize>, Tensor<1>)> {
    let mut out = BTreeMap::new();
    visit_parameters(module, |path, shape, v| {
        out.insert(path.to_string(), (shape, v));
    });
    out
}

/// What a [`map_parameters`] callback sees of one parameter.
pub struct Slot<'a> {
    pub path: &'a str,
    pub shape: &'a [usize],
    /// The current value, flattened.
    pub value: Tensor<1>,
    /// Its gradient, flattened, when gradients were given and hold one.
    pub grad: Option<Tensor<1>>,
}

struct Map<'g, F: FnMut(Slot) -> Tensor<1>> {
    path: Path,
    grads: Option<&'g mut GradientsParams>,
    f: F,
}

impl<F: FnMut(Slot) -> Tensor<1>> ModuleMapper for Map<'_, F> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let grad = match self.grads.as_mut() {
            Some(grads) => match grads.remove::<D>(id) {
                Some(g) => Some(flatten(g)),
                // With gradients given, parameters without one are left alone.
                None => return Param::from_mapped_value(id, tensor, mapper),
            },
            None => None,
        };
        let require_grad = tensor.is_require_grad();
        let autodiff = tensor.is_autodiff();
        // Moved, not cloned: an unshared buffer lets the CPU update run in place.
        let value = tensor.inner();
        let dims: [usize; D] = value.dims();
        let slot = Slot {
            path: &self.path.get(),
            shape: &dims,
            value: flatten(value),
            grad,
        };
        let mut new = (self.f)(slot).reshape(dims);
        if autodiff {
            new = new.autodiff();
        }
        if require_grad {
            new = new.require_grad();
        }
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Rebuilds `module` with `f` applied to each float parameter: it returns the new flat
/// value (the same number of elements; `slot.value` itself to keep it).
pub fn map_parameters<M: Module>(module: M, f: impl FnMut(Slot) -> Tensor<1>) -> M {
    module.map(&mut Map {
        path: Path::default(),
        grads: None,
        f,
    })
}

/// [`map_parameters`] over the parameters that have a gradient in `grads` (removed from
/// it as they are visited); the others are kept as they are.
pub fn map_parameters_with_grads<M: Module>(
    module: M,
    grads: &mut GradientsParams,
    f: impl FnMut(Slot) -> Tensor<1>,
) -> M {
    module.map(&mut Map {
        path: Path::default(),
        grads: Some(grads),
        f,
    })
}

/// Replaces parameters by path from `values` (shape, flat values), which must be on the
/// module's device. Returns the module and one message per shape that did not match
/// (those parameters are left as they were); paths the module lacks stay in `values`.
pub fn set_parameters<M: Module>(
    module: M,
    values: &mut BTreeMap<String, (Vec<usize>, Tensor<1>)>,
) -> (M, Vec<String>) {
    let mut mismatched = Vec::new();
    let module = map_parameters(module, |slot| {
        let Some((shape, flat)) = values.remove(slot.path) else {
            return slot.value;
        };
        if shape != slot.shape {
            mismatched.push(format!(
                "'{}' has shape {shape:?}, the model's is {:?}",
                slot.path, slot.shape
            ));
            return slot.value;
        }
        flat
    });
    (module, mismatched)
}

struct SetTrainable<F: Fn(&str) -> bool> {
    path: Path,
    trainable: F,
}

impl<F: Fn(&str) -> bool> ModuleMapper for SetTrainable<F> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.set_require_grad((self.trainable)(&self.path.get()))
    }
}

/// Marks each float parameter trainable (`require_grad`) or frozen by its path.
pub fn set_trainable<M: Module>(module: M, trainable: impl Fn(&str) -> bool) -> M {
    module.map(&mut SetTrainable {
        path: Path::default(),
        trainable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, TensorData};

    #[derive(Module, Debug)]
    struct Two {
        a: Linear,
        b: Linear,
    }

    fn two() -> Two {
        let d = Device::flex();
        Two {
            a: LinearConfig::new(3, 2).init(&d),
            b: LinearConfig::new(2, 1).with_bias(false).init(&d),
        }
    }

    #[test]
    fn paths_shapes_and_values_round_trip() {
        let m = two();
        let p = parameters(&m);
        let keys: Vec<&str> = p.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a.bias", "a.weight", "b.weight"]);
        assert_eq!(p["a.weight"].0, vec![3, 2]);
        let ids_before = (m.a.weight.id, m.b.weight.id);
        let d = Device::flex();
        let mut values = BTreeMap::from([
            (
                "a.weight".to_string(),
                (
                    vec![3, 2],
                    Tensor::from_data(TensorData::new(vec![1.0f32; 6], [6]), &d),
                ),
            ),
            (
                "b.weight".to_string(),
                (
                    vec![1, 2],
                    Tensor::from_data(TensorData::new(vec![0.0f32; 2], [2]), &d),
                ),
            ),
            (
                "nowhere".to_string(),
                (
                    vec![1],
                    Tensor::from_data(TensorData::new(vec![0.0f32], [1]), &d),
                ),
            ),
        ]);
        let (m, mismatched) = set_parameters(m, &mut values);
        assert_eq!(mismatched.len(), 1, "{mismatched:?}");
        assert!(mismatched[0].contains("'b.weight' has shape [1, 2]"));
        assert!(values.contains_key("nowhere"));
        assert_eq!(
            m.a.weight.val().try_into_vec_as::<f32>().unwrap(),
            vec![1.0; 6]
        );
        assert_eq!((m.a.weight.id, m.b.weight.id), ids_before);
    }

    #[test]
    fn freezing_follows_the_path() {
        // The flag is kept by the parameter and applies on the autodiff device.
        let ad = Device::flex().autodiff();
        let m = set_trainable(two(), |p| p.starts_with("a."))
            .fork(&ad)
            .train();
        assert!(m.a.weight.val().is_require_grad());
        assert!(!m.b.weight.val().is_require_grad());
    }
}

//! AdamW (Loshchilov & Hutter 2019) over named variables, with global-norm gradient clipping and
//! a state that saves and loads exactly, so a resumed run continues bit for bit.
//!
//! candle-nn has an AdamW, but its moment estimates are private: a checkpoint could not hold them,
//! and resuming would restart the moments from zero.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// AdamW settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Decoupled weight decay (multiplied by the learning rate).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// AdamW over a fixed, named set of variables.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    vars: Vec<(String, Var)>,
    /// Per variable (same order): first and second moment estimates.
    moments: Vec<(Tensor, Tensor)>,
    n_steps: u64,
}

impl AdamW {
    /// An optimizer with zero moments for `vars` (names must be unique).
    pub fn new(vars: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self, TrainError> {
        let mut moments = Vec::with_capacity(vars.len());
        for (_, var) in &vars {
            moments.push((var.zeros_like()?, var.zeros_like()?));
        }
        Ok(AdamW { config, vars, moments, n_steps: 0 })
    }

    /// Number of steps taken.
    pub fn n_steps(&self) -> u64 {
        self.n_steps
    }

    /// The settings.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// One update from `grads` (by variable name; a variable without a gradient is left alone
    /// but its moments still decay, as in PyTorch when the gradient is zero).
    pub fn step(&mut self, grads: &BTreeMap<String, Tensor>) -> Result<(), TrainError> {
        self.n_steps += 1;
        let cfg = &self.config;
        let bias1 = 1.0 - cfg.beta1.powi(self.n_steps as i32);
        let bias2 = 1.0 - cfg.beta2.powi(self.n_steps as i32);
        for ((name, var), (first, second)) in self.vars.iter().zip(self.moments.iter_mut()) {
            let grad = match grads.get(name) {
                Some(grad) => grad.clone(),
                None => var.zeros_like()?,
            };
            *first = ((&*first * cfg.beta1)? + (&grad * (1.0 - cfg.beta1))?)?;
            *second = ((&*second * cfg.beta2)? + (grad.sqr()? * (1.0 - cfg.beta2))?)?;
            let first_hat = (&*first / bias1)?;
            let second_hat = (&*second / bias2)?;
            let update = (first_hat / (second_hat.sqrt()? + cfg.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - cfg.lr * cfg.weight_decay))?;
            var.set(&(decayed - (update * cfg.lr)?)?)?;
        }
        Ok(())
    }

    /// Writes the moments and the step count (safetensors) to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let mut tensors = std::collections::HashMap::new();
        for ((name, _), (first, second)) in self.vars.iter().zip(&self.moments) {
            tensors.insert(format!("{name}.exp_avg"), first.clone());
            tensors.insert(format!("{name}.exp_avg_sq"), second.clone());
        }
        tensors.insert("n_steps".to_string(), Tensor::new(&[self.n_steps as i64], &candle_core::Device::Cpu)?);
        let tmp = path.with_extension("tmp");
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, path).map_err(|err| TrainError::io(path, err))
    }

    /// Restores the moments and step count saved by [`AdamW::save`] for the same variables.
    pub fn load(&mut self, path: &Path) -> Result<(), TrainError> {
        let invalid = |message: String| TrainError::Invalid(format!("{}: {message}", path.display()));
        let device = self.vars.first().map(|(_, var)| var.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let tensors = candle_core::safetensors::load(path, &device).map_err(|err| invalid(err.to_string()))?;
        let n_steps = tensors
            .get("n_steps")
            .ok_or_else(|| invalid("no `n_steps`".to_string()))?
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?;
        let n_steps = n_steps.first().copied().filter(|&n| n >= 0).ok_or_else(|| invalid("bad `n_steps`".into()))?;
        let mut moments = Vec::with_capacity(self.vars.len());
        for (name, var) in &self.vars {
            let get = |suffix: &str| -> Result<Tensor, TrainError> {
                let key = format!("{name}.{suffix}");
                let tensor = tensors.get(&key).ok_or_else(|| invalid(format!("missing tensor `{key}`")))?;
                if tensor.dims() != var.dims() {
                    return Err(invalid(format!("`{key}` has shape {:?}, expected {:?}", tensor.dims(), var.dims())));
                }
                Ok(tensor.clone())
            };
            moments.push((get("exp_avg")?, get("exp_avg_sq")?));
        }
        self.moments = moments;
        self.n_steps = n_steps as u64;
        Ok(())
    }
}

/// Adds the gradients of `vars` from one backward pass to the running sums in `grads` (by
/// name): a batch's gradient is accumulated one sequence at a time, so only one sequence's
/// activations are alive at once.
pub fn accumulate_grads(
    grads: &mut BTreeMap<String, Tensor>,
    vars: &[(String, Var)],
    step_grads: &candle_core::backprop::GradStore,
) -> Result<(), TrainError> {
    for (name, var) in vars {
        if let Some(grad) = step_grads.get(var.as_tensor()) {
            let summed = match grads.remove(name) {
                Some(sum) => (sum + grad)?,
                None => grad.clone(),
            };
            grads.insert(name.clone(), summed);
        }
    }
    Ok(())
}

/// Scales `grads` in place so their global L2 norm is at most `max_norm`; returns the norm
/// before clipping (as `torch.nn.utils.clip_grad_norm_` does).
pub fn clip_grad_norm(grads: &mut BTreeMap<String, Tensor>, max_norm: f64) -> Result<f64, TrainError> {
    let mut total = 0f64;
    for grad in grads.values() {
        total += grad.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    }
    let norm = total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for grad in grads.values_mut() {
            *grad = (&*grad * scale)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// One AdamW step by hand: with zero moments, m1 = (1 - b1) g and v1 = (1 - b2) g^2, and the
    /// bias-corrected ratio is g / (|g| + eps) = sign(g) (up to eps), so each parameter moves by
    /// lr * (1 - lr * wd) decay plus lr against its gradient's sign.
    #[test]
    fn first_step_moves_by_the_learning_rate_against_the_gradient() {
        let var = Var::new(&[1.0f32, -2.0, 0.5], &Device::Cpu).unwrap();
        let config = AdamWConfig { lr: 0.1, weight_decay: 0.01, ..AdamWConfig::default() };
        let mut optimizer = AdamW::new(vec![("w".to_string(), var.clone())], config).unwrap();
        let grads = BTreeMap::from([("w".to_string(), Tensor::new(&[0.3f32, -4.0, 0.0], &Device::Cpu).unwrap())]);
        optimizer.step(&grads).unwrap();
        let values = var.as_tensor().to_vec1::<f32>().unwrap();
        let decay = 1.0 - 0.1 * 0.01;
        let expected = [1.0 * decay - 0.1, -2.0 * decay + 0.1, 0.5 * decay];
        for (got, want) in values.iter().zip(expected) {
            assert!((*got as f64 - want).abs() < 1e-5, "{values:?}");
        }
    }

    /// Saving after two steps and loading into a fresh optimizer gives the same third step.
    #[test]
    fn saved_state_resumes_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let grads = |scale: f32| {
            BTreeMap::from([("w".to_string(), Tensor::new(&[0.3f32 * scale, -1.0], &Device::Cpu).unwrap())])
        };
        let var = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut optimizer = AdamW::new(vec![("w".to_string(), var.clone())], AdamWConfig::default()).unwrap();
        optimizer.step(&grads(1.0)).unwrap();
        optimizer.step(&grads(2.0)).unwrap();
        let path = dir.path().join("optimizer.safetensors");
        optimizer.save(&path).unwrap();
        let snapshot = var.as_tensor().to_vec1::<f32>().unwrap();
        optimizer.step(&grads(3.0)).unwrap();
        let uninterrupted = var.as_tensor().to_vec1::<f32>().unwrap();

        let resumed_var = Var::new(snapshot.as_slice(), &Device::Cpu).unwrap();
        let mut resumed = AdamW::new(vec![("w".to_string(), resumed_var.clone())], AdamWConfig::default()).unwrap();
        resumed.load(&path).unwrap();
        assert_eq!(resumed.n_steps(), 2);
        resumed.step(&grads(3.0)).unwrap();
        assert_eq!(resumed_var.as_tensor().to_vec1::<f32>().unwrap(), uninterrupted);
    }

    #[test]
    fn loading_a_mismatched_state_names_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        let small = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        AdamW::new(vec![("w".to_string(), small)], AdamWConfig::default()).unwrap().save(&path).unwrap();
        let big = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut optimizer = AdamW::new(vec![("w".to_string(), big)], AdamWConfig::default()).unwrap();
        let message = optimizer.load(&path).unwrap_err().to_string();
        assert!(message.contains("w.exp_avg") && message.contains("optimizer.safetensors"), "{message}");
    }

    /// Norm of (3, 4) is 5; clipping to 1 scales by 1 / 5.
    #[test]
    fn clipping_scales_to_the_maximum_norm() {
        let mut grads = BTreeMap::from([
            ("a".to_string(), Tensor::new(&[3.0f32], &Device::Cpu).unwrap()),
            ("b".to_string(), Tensor::new(&[4.0f32], &Device::Cpu).unwrap()),
        ]);
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let a = grads["a"].to_vec1::<f32>().unwrap()[0];
        assert!((a - 0.6).abs() < 1e-5);
        let norm_after = clip_grad_norm(&mut grads, 10.0).unwrap();
        assert!((norm_after - 1.0).abs() < 1e-5);
    }
}

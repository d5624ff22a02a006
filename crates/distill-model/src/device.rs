//! Device selection: the only module in distill that names a burn backend.
//!
//! `cpu` is burn's pure-Rust `flex` backend and always available. `ndarray` and
//! `wgpu` exist when distill is built with the cargo feature of the same name.
//! `Device::default()` is never used: with wgpu compiled in it silently picks
//! a GPU (or a software rasteriser), so the device is always named.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub use burn::prelude::Device;

/// Where a model trains or runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// burn-flex: pure Rust, SIMD + rayon. The default.
    #[default]
    Cpu,
    /// burn-ndarray (deprecated upstream; cargo feature `ndarray`).
    Ndarray,
    /// burn-wgpu: Vulkan / Metal / DX12 GPUs (cargo feature `wgpu`).
    Wgpu,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 3] = [DeviceKind::Cpu, DeviceKind::Ndarray, DeviceKind::Wgpu];

    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Ndarray => "ndarray",
            DeviceKind::Wgpu => "wgpu",
        }
    }

    /// Whether this binary was built with the backend.
    pub fn compiled(self) -> bool {
        match self {
            DeviceKind::Cpu => true,
            DeviceKind::Ndarray => cfg!(feature = "ndarray"),
            DeviceKind::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// Backends compiled into this binary.
    pub fn available() -> Vec<DeviceKind> {
        Self::ALL.into_iter().filter(|k| k.compiled()).collect()
    }

    /// The inference device (no autodiff). Call `.autodiff()` on it to train.
    pub fn device(self) -> Result<Device, crate::Error> {
        if !self.compiled() {
            return Err(crate::Error::DeviceNotCompiled {
                device: self.name(),
                available: Self::available()
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(make(self))
    }
}

#[allow(deprecated)]
fn make(kind: DeviceKind) -> Device {
    match kind {
        #[cfg(feature = "ndarray")]
        DeviceKind::Ndarray => Device::ndarray(),
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => Device::wgpu(Default::default()),
        _ => Device::flex(),
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(DeviceKind::Cpu),
            "ndarray" => Ok(DeviceKind::Ndarray),
            "wgpu" | "gpu" => Ok(DeviceKind::Wgpu),
            other => Err(format!(
                "unknown device `{other}` (expected cpu, ndarray or wgpu)"
            )),
        }
    }
}

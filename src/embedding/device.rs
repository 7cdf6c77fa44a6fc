//! `encoder.device`: where the model runs.

use candle_core::Device;

pub use crate::config::DeviceSpec;

impl DeviceSpec {
    /// Opens the device. `cuda` in a build without the `cuda` feature is an error that says so.
    pub fn open(self) -> Result<Device, candle_core::Error> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    candle_core::bail!(
                        "encoder.device cuda:{n}: this binary was built without CUDA support \
                         (rebuild with `cargo build --release --features cuda`)"
                    );
                }
                Device::new_cuda(n)
            }
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                    tracing::warn!(
                        "encoder.device auto: CUDA is compiled in but no GPU opened; using the CPU"
                    );
                }
                Ok(Device::Cpu)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!(DeviceSpec::parse("cpu"), Ok(DeviceSpec::Cpu));
        assert_eq!(DeviceSpec::parse("cuda"), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(DeviceSpec::parse("cuda:3"), Ok(DeviceSpec::Cuda(3)));
        assert_eq!(DeviceSpec::parse("auto"), Ok(DeviceSpec::Auto));
        assert!(DeviceSpec::parse("gpu").is_err());
        assert!(DeviceSpec::parse("cuda:x").is_err());
    }
}

//! `CliError`: why a command failed, printed by `main` as one line
//! (`casegate: <message>`). The library's own errors keep their type up to
//! here; a verb's own refusals (an answer from the gateway, a file it
//! cannot use) are already the line to print.

use crate::bootstrap::StartError;
use crate::config::ConfigError;
use crate::fsutil::SecretFileError;
use crate::rotation::RotationError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error(transparent)]
    SecretFile(#[from] SecretFileError),
    #[error(transparent)]
    UploadState(#[from] super::upload::StateError),
    #[error(transparent)]
    UploadFiles(#[from] super::upload::WalkError),
    #[error(transparent)]
    UploadCredentials(#[from] super::upload::CredentialsError),
    /// A verb's own message.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for CliError {
    fn from(message: String) -> CliError {
        CliError::Failed(message)
    }
}

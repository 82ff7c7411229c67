//! Where ctem keeps its files: the user's data and config directories, overridable for scripts and tests.

use std::path::PathBuf;

pub struct Paths {
    pub data_dir: PathBuf,
    pub config_dir: PathBuf,
}

impl Paths {
    /// `CTEM_DATA_DIR` and `CTEM_CONFIG_DIR` override the platform directories.
    pub fn discover() -> Paths {
        let proj = directories::ProjectDirs::from("", "", "ctem");
        let data_dir = std::env::var_os("CTEM_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| proj.as_ref().map(|p| p.data_dir().to_path_buf()))
            .unwrap_or_else(|| PathBuf::from(".ctem"));
        let config_dir = std::env::var_os("CTEM_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| proj.as_ref().map(|p| p.config_dir().to_path_buf()))
            .unwrap_or_else(|| PathBuf::from(".ctem"));
        Paths { data_dir, config_dir }
    }

    pub fn default_db(&self) -> PathBuf {
        self.data_dir.join("ctem.duckdb")
    }

    pub fn demo_db(&self) -> PathBuf {
        self.data_dir.join("demo.duckdb")
    }

    pub fn sample_dir(&self) -> PathBuf {
        self.data_dir.join("sample-data")
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join("ctem.log")
    }
}

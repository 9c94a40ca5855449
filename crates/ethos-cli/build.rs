//! Records the git revision of the source tree in the binary, so run manifests can name the code that ran.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn main() {
    let revision = git(&["rev-parse", "HEAD"]).unwrap_or_default();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
    println!("cargo:rustc-env=ETHOS_GIT_REVISION={revision}");
    println!("cargo:rustc-env=ETHOS_GIT_DIRTY={}", dirty.map(|d| d.to_string()).unwrap_or_default());
    // Rebuild when HEAD moves or the index changes (a commit or a checkout).
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/index");
    }
}

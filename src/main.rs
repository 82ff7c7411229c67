use clap::Parser;

fn main() {
    let cli = ctem::cli::Cli::parse();
    match ctem::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ctem: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    std::process::exit(fmnist_pipe::cli::main());
}

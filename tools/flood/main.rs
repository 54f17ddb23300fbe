//! flood: real-kernel burst generator and end-to-end meter (to be written).
fn main() {
    eprintln!("flood: not implemented yet");
    std::process::exit(1);
}

//! Sets up the linker flags a Node addon needs (symbols resolved by the Node process at load time).

fn main() {
    napi_build::setup();
}

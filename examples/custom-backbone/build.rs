fn main() {
    facerec_build::link_libtorch();
}

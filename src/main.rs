fn main() {
    print!("{}", regcred::api::crd_yaml());
}

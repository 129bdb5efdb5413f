fn main() { cronwarden::hello(); }

// placeholder until the vendored libsodium lands

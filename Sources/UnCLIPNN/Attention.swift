/// Splits the channel axis into heads: [B, L, H·dh] → [B, H, L, dh].
///
/// Head-major, as every checkpoint here is laid out (spec §1 "Multi-head split"): head i owns channels
/// [i·dh, (i+1)·dh).
public func splitHeads(_ x: Tensor, heads: Int) -> Tensor {
    precondition(x.rank == 3 && x.shape[2] % heads == 0, "splitHeads: \(x.shape) does not split into \(heads) heads")
    let (b, l, d) = (x.shape[0], x.shape[1], x.shape[2])
    return x.reshaped([b, l, heads, d / heads])  // [B, L, H, dh]
        .permuted([0, 2, 1, 3])                  // [B, H, L, dh]
}

/// Joins heads back into channels: [B, H, L, dh] → [B, L, H·dh] (the inverse of `splitHeads`).
public func mergeHeads(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4, "mergeHeads: expected [B, H, L, dh], got \(x.shape)")
    let (b, h, l, dh) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    return x.permuted([0, 2, 1, 3])  // [B, L, H, dh]
        .reshaped([b, l, h * dh])    // [B, L, H·dh]
}

// 2× nearest upsampling and 2×2 average pooling of NCHW images, each the other's adjoint (up to a factor 4).

extension Tensor {
    /// Nearest-neighbour 2× upsampling: `[N, C, H, W]` → `[N, C, 2H, 2W]`, each pixel copied to a 2×2 block.
    ///
    /// Matches `F.interpolate(x, scale_factor=2.0, mode="nearest")` (diffusers' `Upsample2D`).
    public func upsampleNearest2x() -> Tensor {
        precondition(rank == 4, "upsampleNearest2x: input must be [N, C, H, W], got \(shape)")
        let planes = shape[0] * shape[1], h = shape[2], w = shape[3]
        let out = Tensor(uninitializedShape: [shape[0], shape[1], 2 * h, 2 * w])
        ResampleKernels.upsample(data, out.data, planes: planes, h: h, w: w)
        return out.recorded("upsample_nearest2x", [self]) { g, _ in
            // Each input pixel fed four outputs: sum their gradients.
            let gx = Tensor(uninitializedShape: self.shape)
            ResampleKernels.pool(g.data, gx.data, planes: planes, h: 2 * h, w: 2 * w, scale: 1)
            return [gx]
        }
    }

    /// 2×2 average pooling with stride 2: `[N, C, H, W]` → `[N, C, H/2, W/2]`, an odd last row or column dropped.
    ///
    /// Matches `F.avg_pool2d(x, kernel_size=2, stride=2)` (floor mode, as in diffusers' `Downsample2D`
    /// without a convolution).
    public func avgPool2x2() -> Tensor {
        precondition(rank == 4, "avgPool2x2: input must be [N, C, H, W], got \(shape)")
        let planes = shape[0] * shape[1], h = shape[2], w = shape[3]
        let out = Tensor(uninitializedShape: [shape[0], shape[1], h / 2, w / 2])
        ResampleKernels.pool(data, out.data, planes: planes, h: h, w: w, scale: 0.25)
        return out.recorded("avg_pool2x2", [self]) { g, _ in
            // A quarter of each output's gradient to each of its four inputs; a dropped row or column gets none.
            let gx = Tensor(uninitializedShape: self.shape)
            ResampleKernels.unpool(g.data, gx.data, planes: planes, h: h, w: w, scale: 0.25)
            return [gx]
        }
    }
}

/// Loops over image planes for the resampling ops.
enum ResampleKernels {
    /// y[2i+a, 2j+b] = x[i, j] for each of `planes` planes of `h × w`.
    static func upsample(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int, h: Int, w: Int) {
        let rows = planes * h
        parallelFor(rows, grain: Swift.max(1, 8_192 / Swift.max(w, 1))) { range in
            for r in range {
                let src = x + r * w, dst = y + r * 4 * w
                for j in 0..<w { let v = src[j]; dst[2 * j] = v; dst[2 * j + 1] = v }
                (dst + 2 * w).update(from: dst, count: 2 * w)
            }
        }
    }

    /// y[i, j] = scale · Σ x[2i+a, 2j+b] for each plane of `h × w` (output `h/2 × w/2`).
    static func pool(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int, h: Int, w: Int, scale: Float) {
        let ho = h / 2, wo = w / 2
        parallelFor(planes * ho, grain: Swift.max(1, 8_192 / Swift.max(w, 1))) { range in
            for r in range {
                let p = r / ho, i = r % ho
                let r0 = x + (p * h + 2 * i) * w, r1 = r0 + w, dst = y + r * wo
                for j in 0..<wo { dst[j] = scale * ((r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1])) }
            }
        }
    }

    /// The adjoint of `pool`: x[2i+a, 2j+b] = scale · g[i, j]; rows and columns beyond 2·(h/2), 2·(w/2) get 0.
    static func unpool(_ g: UnsafePointer<Float>, _ x: UnsafeMutablePointer<Float>, planes: Int, h: Int, w: Int, scale: Float) {
        let ho = h / 2, wo = w / 2
        parallelFor(planes * h, grain: Swift.max(1, 8_192 / Swift.max(w, 1))) { range in
            for r in range {
                let p = r / h, i = r % h
                let dst = x + r * w
                if i >= 2 * ho { dst.update(repeating: 0, count: w); continue }
                let src = g + (p * ho + i / 2) * wo
                for j in 0..<wo { let v = scale * src[j]; dst[2 * j] = v; dst[2 * j + 1] = v }
                if w > 2 * wo { dst[w - 1] = 0 }
            }
        }
    }
}

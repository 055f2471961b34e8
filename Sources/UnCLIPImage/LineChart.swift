import Foundation

/// A line chart drawn by the project (no plotting library): a frame with ticks and tick labels on both axes, one
/// polyline per series with a marker at each point and an optional ± error bar, a legend under the axes, a title and
/// axis labels, in the standard bitmap font. For the paper's charts of metrics against a setting (Figure 10's against guidance).
public struct LineChart: Sendable {
    public struct Point: Sendable, Equatable {
        public var x: Double
        public var y: Double
        /// Half-length of the error bar (a standard error, say); nil draws none.
        public var error: Double?

        public init(x: Double, y: Double, error: Double? = nil) {
            self.x = x
            self.y = y
            self.error = error
        }
    }

    public struct Series: Sendable {
        public var name: String
        public var color: (red: UInt8, green: UInt8, blue: UInt8)
        public var points: [Point]

        public init(name: String, color: (red: UInt8, green: UInt8, blue: UInt8), points: [Point]) {
            self.name = name
            self.color = color
            self.points = points
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    /// x positions of the ticks (and their labels); nil: rounded values across the data.
    public var xTicks: [Double]?
    /// The y axis' range; nil: the data's (with error bars), widened to rounded tick values.
    public var yRange: ClosedRange<Double>?
    public var width: Int
    public var height: Int

    public init(title: String, xLabel: String, yLabel: String, series: [Series], xTicks: [Double]? = nil,
                yRange: ClosedRange<Double>? = nil, width: Int = 420, height: Int = 300) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.xTicks = xTicks
        self.yRange = yRange
        self.width = width
        self.height = height
    }

    /// Colours that stay apart on white and in print: blue, orange, green, red, purple.
    public static let palette: [(red: UInt8, green: UInt8, blue: UInt8)] = [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    ]

    /// About `count` evenly spaced round values (steps of 1, 2 or 5 × 10ᵏ) covering `low … high`.
    public static func ticks(from low: Double, to high: Double, count: Int = 5) -> [Double] {
        guard low.isFinite, high.isFinite, count > 0 else { return [] }
        guard high > low else { return [low] }
        let raw = (high - low) / Double(count)
        let exponent = Int(floor(log10(raw)))
        let magnitude = pow(10, Double(exponent))
        let multiple = [1, 2, 5, 10].first { Double($0) * magnitude >= raw } ?? 10
        let step = Double(multiple) * magnitude
        // Tick k is k · multiple · 10^exponent, computed so that 3 × 0.2 prints as 0.6: one division by an exact
        // power of ten for negative exponents.
        func tick(_ k: Int) -> Double {
            exponent < 0 ? Double(k * multiple) / pow(10, Double(-exponent)) : Double(k * multiple) * magnitude
        }
        let first = Int(floor(low / step)), last = Int(ceil(high / step))
        return (first...last).map(tick)
    }

    /// The chart as an image.
    public func render() -> RGBImage {
        let font = BitmapFont.standard
        var image = RGBImage(width: width, height: height, red: 255, green: 255, blue: 255)
        let points = series.flatMap(\.points)

        // The data ranges.
        let xs = xTicks ?? Self.ticks(from: points.map(\.x).min() ?? 0, to: points.map(\.x).max() ?? 1)
        let xLow = min(xs.min() ?? 0, points.map(\.x).min() ?? 0), xHigh = max(xs.max() ?? 1, points.map(\.x).max() ?? 1)
        let yTicks: [Double]
        if let yRange {
            yTicks = Self.ticks(from: yRange.lowerBound, to: yRange.upperBound).filter { yRange.contains($0) }
        } else {
            let lows = points.map { $0.y - ($0.error ?? 0) }, highs = points.map { $0.y + ($0.error ?? 0) }
            yTicks = Self.ticks(from: lows.min() ?? 0, to: highs.max() ?? 1)
        }
        let yLow = yRange?.lowerBound ?? yTicks.first ?? 0, yHigh = yRange?.upperBound ?? yTicks.last ?? 1
        let yStep = yTicks.count > 1 ? yTicks[1] - yTicks[0] : 1
        func label(_ v: Double, step: Double) -> String {
            let decimals = step >= 1 ? 0 : step >= 0.1 ? 1 : step >= 0.01 ? 2 : 3
            return String(format: "%.\(decimals)f", v)
        }
        let xStep = xs.count > 1 ? xs[1] - xs[0] : 1
        let yLabels = yTicks.map { label($0, step: yStep) }

        // The plot area: the title and y label above it, tick labels left of it, x labels and the axis label under it.
        let left = 8 + (yLabels.map { font.width(of: $0) }.max() ?? 0) + 6
        let top = 6 + 2 * font.cellHeight + 6
        let right = width - 12, bottom = height - (3 * font.cellHeight + 16)
        guard right - left > 20, bottom - top > 20 else { return image }
        func px(_ x: Double) -> Int { left + Int(((x - xLow) / max(xHigh - xLow, 1e-12) * Double(right - left)).rounded()) }
        func py(_ y: Double) -> Int { bottom - Int(((y - yLow) / max(yHigh - yLow, 1e-12) * Double(bottom - top)).rounded()) }

        let black: (UInt8, UInt8, UInt8) = (0, 0, 0), grey: (UInt8, UInt8, UInt8) = (225, 225, 225)
        image.draw(text: font.truncated(title, toWidth: width - 12), x: (width - font.width(of: font.truncated(title, toWidth: width - 12))) / 2,
                   y: 6, color: black)
        image.draw(text: yLabel, x: 8, y: 6 + font.cellHeight + 2, color: black)
        // Grid lines and ticks.
        for (v, text) in zip(yTicks, yLabels) {
            let y = py(v)
            image.line(from: (left, y), to: (right, y), color: grey)
            image.line(from: (left - 4, y), to: (left, y), color: black)
            image.draw(text: text, x: left - 6 - font.width(of: text), y: y - font.cellHeight / 2, color: black)
        }
        for v in xs {
            let x = px(v)
            image.line(from: (x, top), to: (x, bottom), color: grey)
            image.line(from: (x, bottom), to: (x, bottom + 4), color: black)
            let text = label(v, step: xStep)
            image.draw(text: text, x: x - font.width(of: text) / 2, y: bottom + 6, color: black)
        }
        image.draw(text: xLabel, x: (left + right - font.width(of: xLabel)) / 2, y: bottom + 8 + font.cellHeight, color: black)
        // The frame.
        image.line(from: (left, top), to: (left, bottom), color: black)
        image.line(from: (left, bottom), to: (right, bottom), color: black)
        image.line(from: (left, top), to: (right, top), color: black)
        image.line(from: (right, top), to: (right, bottom), color: black)

        // The series: error bars, lines, markers.
        for s in series {
            let c = s.color
            for p in s.points {
                guard let e = p.error, e > 0 else { continue }
                let x = px(p.x), y0 = py(p.y - e), y1 = py(p.y + e)
                image.line(from: (x, y0), to: (x, y1), color: c)
                image.line(from: (x - 3, y0), to: (x + 3, y0), color: c)
                image.line(from: (x - 3, y1), to: (x + 3, y1), color: c)
            }
            for (a, b) in zip(s.points, s.points.dropFirst()) {
                image.line(from: (px(a.x), py(a.y)), to: (px(b.x), py(b.y)), color: c, thickness: 2)
            }
            for p in s.points { image.fill(x: px(p.x) - 3, y: py(p.y) - 3, width: 7, height: 7, color: c) }
        }

        // The legend, under the axis label (never over the data): a swatch and the name per series, centred.
        let entries = series.map { font.width(of: $0.name) + 24 }
        var x = (width - (entries.reduce(0, +) + 12 * max(series.count - 1, 0))) / 2
        let y = height - font.cellHeight - 4
        for (s, w) in zip(series, entries) {
            image.line(from: (x, y + font.cellHeight / 2), to: (x + 16, y + font.cellHeight / 2), color: s.color, thickness: 2)
            image.draw(text: s.name, x: x + 22, y: y, color: black)
            x += w + 12
        }
        return image
    }
}

extension RGBImage {
    /// A straight line between two pixel centres, `thickness` pixels wide (a square pen), clipped to the image.
    public mutating func line(from a: (Int, Int), to b: (Int, Int), color: (red: UInt8, green: UInt8, blue: UInt8),
                              thickness: Int = 1) {
        let steps = max(abs(b.0 - a.0), abs(b.1 - a.1), 1)
        for k in 0...steps {
            let t = Double(k) / Double(steps)
            let x = Int((Double(a.0) + t * Double(b.0 - a.0)).rounded()), y = Int((Double(a.1) + t * Double(b.1 - a.1)).rounded())
            fill(x: x - (thickness - 1) / 2, y: y - (thickness - 1) / 2, width: thickness, height: thickness, color: color)
        }
    }

    /// Fills a rectangle, clipped to the image.
    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, color: (red: UInt8, green: UInt8, blue: UInt8)) {
        let x0 = max(0, x), x1 = min(width, x + w), y0 = max(0, y), y1 = min(height, y + h)
        guard x0 < x1, y0 < y1 else { return }
        for row in y0..<y1 {
            for col in x0..<x1 {
                let i = (row * width + col) * 3
                pixels[i] = color.red
                pixels[i + 1] = color.green
                pixels[i + 2] = color.blue
            }
        }
    }
}

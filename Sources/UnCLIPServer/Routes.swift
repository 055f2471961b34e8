import Foundation
import Hummingbird
import Logging
import UnCLIPImage
import UnCLIPModels

/// The router of `unclip serve`: the OpenAI Images API, its extensions, the files behind `url`s, jobs, health,
/// metrics and the web page. Tests drive it in process (`app.test(.router)`) and over a socket (`.live`).
///
/// Middleware, outermost first: request id and log line, metrics by route and status, errors in the API's shape;
/// the API routes add the key check. The files behind `url`s need no key: their 128-bit ids are the secret, as
/// the real API's signed URLs were; the page, `/health` and `/metrics` are open too.
public func buildRouter(service: ImageService) -> Router<ServerRequestContext> {
    let router = Router(context: ServerRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: MetricsMiddleware(metrics: service.metrics))
    router.add(middleware: APIErrorMiddleware())
    let routes = Routes(service: service)

    router.get("/") { _, _ in try service.web.response("index.html") }
    router.get("/web/:file") { _, context in try service.web.response(context.parameters.get("file") ?? "") }
    router.get("/health") { _, _ in
        jsonResponse(["status": "ok", "model": service.modelName, "queued": service.model.queued])
    }
    router.get("/metrics") { _, _ in
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: service.metrics.exposition(
                     queued: service.model.queued, fileBytes: service.files.bytes,
                     batches: service.model.generationBatches))))
    }
    router.get("/v1/images/files/:file") { _, context in try routes.file(context.parameters.get("file") ?? "") }

    let api = router.group("v1").add(middleware: APIKeyMiddleware(keys: service.configuration.apiKeys))
    api.get("models") { _, _ in jsonResponse(["object": "list", "data": routes.models]) }
    api.get("models/:id") { _, context in
        guard let model = routes.models.first(where: { $0["id"] as? String == context.parameters.get("id") }) else {
            throw APIError(.notFound, "The model '\(context.parameters.get("id") ?? "")' does not exist.", param: "model", code: "model_not_found")
        }
        return jsonResponse(model)
    }
    // The client chooses a job's id before its request arrives, so an id not seen (yet) reads as pending.
    api.get("jobs/:id") { _, context in
        let id = context.parameters.get("id") ?? ""
        guard JobBoard.isValidID(id) else { throw APIError.invalid("id", "Invalid job id.", code: "invalid_job_id") }
        return jsonResponse(service.jobs.job(id)?.json ?? ["id": id, "object": "job", "status": "pending"])
    }
    api.post("images/generations") { request, context in try await routes.job(request, .json, logger: context.logger, routes.generations) }
    api.post("images/variations") { request, context in try await routes.job(request, .form, logger: context.logger, routes.variations) }
    api.post("images/edits") { request, context in try await routes.job(request, .form, logger: context.logger, routes.edits) }
    api.post("images/interpolations") { request, context in try await routes.job(request, .form, logger: context.logger, routes.interpolations) }
    api.post("images/text-diffs") { request, context in try await routes.job(request, .form, logger: context.logger, routes.textDiffs) }
    return router
}

/// How a job route's body is encoded.
enum BodyKind: Sendable { case json, form }

/// The handlers: each reads and validates its request completely before the model is asked for anything.
struct Routes: Sendable {
    let service: ImageService

    var models: [[String: Any]] {
        [service.modelName, "dall-e-2"].map { ["id": $0, "object": "model", "created": 1_698_785_189, "owned_by": "swift-unclip"] }
    }

    func file(_ name: String) throws -> Response {
        guard name.hasSuffix(".png"), let png = service.files.read(String(name.dropLast(4))) else {
            throw APIError(.notFound, "No such image (image URLs are valid for 60 minutes).", code: "file_not_found")
        }
        return Response(status: .ok, headers: [.contentType: "image/png", .cacheControl: "private, max-age=3600"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: png)))
    }

    // MARK: The OpenAI Images API

    func generations(_ request: Request, _ body: RequestBody) async throws -> Response {
        let fields = try await json(request, body)
        let prompt = try fields.requiredString("prompt", maxLength: ImageRequest.maxPromptLength)
        let r = try ImageRequest(fields, models: service.modelNames)
        let options = service.samplingOptions(r), seed = r.seed ?? .random(in: 0...UInt64.max)
        return try await answer(request, r) { id in
            try await service.generate(prompt, options: options, seed: seed, job: id)
        }
    }

    /// Variations as the API made them: the image's CLIP embedding, fresh decoder noise (diffusers'
    /// `UnCLIPImageVariationPipeline`). With the extension field `eta`, the paper's instead (§3.1): the decoder
    /// latent from DDIM inversion of the image, sampled at η.
    func variations(_ request: Request, _ body: RequestBody) async throws -> Response {
        let form = try await self.form(request, body)
        let r = try ImageRequest(RequestFields(form: form.fields), models: service.modelNames)
        let image = try PNGInput.decode(form.files["image"], field: "image", maxSide: service.configuration.maxInputSide).image
        try requireImageEncoder("variations")
        let options = service.samplingOptions(r), ddim = service.ddimOptions(r), seed = r.seed ?? .random(in: 0...UInt64.max)
        return try await answer(request, "variations", r) { pipeline, progress in
            var noise = SeededNoise(seed: seed)
            if r.eta != nil { return try pipeline.variations(of: image, count: r.n, options: ddim, noise: &noise, progress: progress) }
            return try pipeline.vary(imageEmbeddings: try pipeline.imageEmbeddings(of: [image]), options: options,
                                     noise: &noise, progress: progress)
        }
    }

    /// Inpainting (RePaint): the region where the mask — `mask`'s alpha, else the image's own — is 0 is repainted.
    func edits(_ request: Request, _ body: RequestBody) async throws -> Response {
        let form = try await self.form(request, body)
        let fields = RequestFields(form: form.fields)
        let maxSide = service.configuration.maxInputSide
        let input = try PNGInput.decode(form.files["image"], field: "image", maxSide: maxSide)
        let prompt = try fields.requiredString("prompt", maxLength: ImageRequest.maxPromptLength)
        let r = try ImageRequest(fields, models: service.modelNames)
        let mask: InpaintingMask
        if let file = form.files["mask"] {
            let m = try PNGInput.decode(file, field: "mask", maxSide: maxSide)
            guard m.width == input.width && m.height == input.height else {
                throw APIError.invalid("mask", "Invalid mask - the mask is \(m.width)x\(m.height) but the image is \(input.width)x\(input.height); they must be the same size.", code: "invalid_mask")
            }
            guard let alpha = m.alpha else {
                throw APIError.invalid("mask", "Invalid mask - format must be in ['RGBA', 'LA'], got RGB: its fully transparent pixels mark the area to repaint.", code: "invalid_mask")
            }
            mask = try InpaintingMask(alpha: alpha, width: m.width, height: m.height)
        } else {
            guard let alpha = input.alpha else {
                throw APIError.invalid("image", "Invalid input image - format must be in ['RGBA', 'LA', 'L'], got RGB. Without a mask, the image's transparent pixels mark the area to repaint.", code: "invalid_image_format")
            }
            mask = try InpaintingMask(alpha: alpha, width: input.width, height: input.height)
        }
        let options = service.samplingOptions(r), seed = r.seed ?? .random(in: 0...UInt64.max), image = input.image
        let inpainting = service.inpaintingOptions(options)
        return try await answer(request, "edits", r) { pipeline, progress in
            var noise = SeededNoise(seed: seed)
            return try pipeline.edit(image, mask: mask, prompt: prompt, options: options, inpainting: inpainting,
                                     noise: &noise, progress: progress)
        }
    }

    // MARK: Extensions (not in the OpenAI API)

    /// `image` → `image2` through CLIP image-embedding space (unCLIP §3.2): `n` frames (2–10, default 5), each
    /// entry with its `theta`; `latent` `interpolated` (default) or `shared`.
    func interpolations(_ request: Request, _ body: RequestBody) async throws -> Response {
        let form = try await self.form(request, body)
        let fields = RequestFields(form: form.fields)
        let r = try ImageRequest(fields, models: service.modelNames, nRange: 2...10, defaultN: 5)
        let maxSide = service.configuration.maxInputSide
        let first = try PNGInput.decode(form.files["image"], field: "image", maxSide: maxSide).image
        let second = try PNGInput.decode(form.files["image2"], field: "image2", maxSide: maxSide).image
        let latent = try fields.choice("latent", ["interpolated": InterpolationLatent.interpolated, "shared": .shared]) ?? .interpolated
        try requireImageEncoder("interpolations")
        let ddim = service.ddimOptions(r), seed = r.seed ?? .random(in: 0...UInt64.max)
        let thetas = (0..<r.n).map { Double($0) / Double(r.n - 1) }
        return try await answer(request, "interpolations", r, extra: thetas.map { ["theta": $0] }) { pipeline, progress in
            var noise = SeededNoise(seed: seed)
            return try pipeline.interpolate(first, second, frames: r.n, latent: latent, options: ddim, noise: &noise, progress: progress).images
        }
    }

    /// A text diff (unCLIP §3.3): the image's embedding turned by θ toward `to` − `from`. `theta` (0–1, default
    /// 0.5) is the last frame's; with `n` > 1 the frames are θ·k/(n − 1), k = 0…n − 1.
    func textDiffs(_ request: Request, _ body: RequestBody) async throws -> Response {
        let form = try await self.form(request, body)
        let fields = RequestFields(form: form.fields)
        let r = try ImageRequest(fields, models: service.modelNames)
        let image = try PNGInput.decode(form.files["image"], field: "image", maxSide: service.configuration.maxInputSide).image
        let source = try fields.requiredString("from", maxLength: ImageRequest.maxPromptLength)
        let target = try fields.requiredString("to", maxLength: ImageRequest.maxPromptLength)
        let theta = Float(try fields.number("theta", in: 0...1) ?? 0.5)
        try requireImageEncoder("text diffs")
        let thetas = r.n == 1 ? [theta] : (0..<r.n).map { theta * Float($0) / Float(r.n - 1) }
        let ddim = service.ddimOptions(r), seed = r.seed ?? .random(in: 0...UInt64.max)
        return try await answer(request, "text-diffs", r, extra: thetas.map { ["theta": Double($0)] }) { pipeline, progress in
            var noise = SeededNoise(seed: seed)
            return try pipeline.textDiff(image, from: source, to: target, thetas: thetas, options: ddim, noise: &noise, progress: progress)
        }
    }

    // MARK: Shared steps

    /// Runs a job route on the request's body, cancelled when the client hangs up: Hummingbird's
    /// `consumeWithCancellationOnInboundClose` hands the route the body and watches the connection's inbound stream
    /// after it, whose end is the hang-up (the model then drops the job at its next step). Errors become responses
    /// here, so that error answers say they close the connection too.
    func job(_ request: Request, _ kind: BodyKind, logger: Logger, _ route: @Sendable (Request, RequestBody) async throws -> Response) async throws -> Response {
        try precheck(request, kind)
        guard service.configuration.cancelOnDisconnect else { return try await route(request, request.body) }
        var response: Response
        do {
            response = try await request.body.consumeWithCancellationOnInboundClose { body in try await route(request, body) }
        } catch {
            response = errorResponse(error, request: request, logger: logger)
        }
        // Hummingbird closes the connection after such a response; saying so lets clients open a new one at once.
        response.headers[.connection] = "close"
        return response
    }

    /// What can be refused before the body is touched (a declared length over the limit, a wrong content type),
    /// refused here, outside the hang-up watcher, so the answer goes out before the body would have been read.
    private func precheck(_ request: Request, _ kind: BodyKind) throws {
        let c = service.configuration
        let length = request.headers[.contentLength].flatMap { Int($0) }
        switch kind {
        case .json: if let length, length > c.maxJSONBytes { throw APIError.tooLarge(limit: c.maxJSONBytes) }
        case .form: try FormData.check(contentType: request.headers[.contentType], contentLength: length, maxBytes: c.maxMultipartBytes)
        }
    }

    /// Runs a job on the model (see `answer(_:_:extra:_:)`).
    private func answer(_ request: Request, _ operation: String, _ r: ImageRequest,
                        extra: [[String: Any]] = [],
                        _ body: @escaping @Sendable (UnCLIPPipeline, @escaping (PipelineProgress) -> Bool) throws -> Tensor) async throws -> Response {
        try await answer(request, r, extra: extra) { id in
            try await service.run(operation, job: id, images: r.n) { pipeline, progress in
                UnCLIPPipeline.images(from: try body(pipeline, progress))
            }
        }
    }

    /// Runs a job (its id from `x-unclip-job-id` when the client chose a sane one) and answers with its images.
    private func answer(_ request: Request, _ r: ImageRequest, extra: [[String: Any]] = [],
                        _ job: (_ id: String) async throws -> [RGBImage]) async throws -> Response {
        let id = request.headers[.jobID].flatMap { JobBoard.isValidID($0) ? $0 : nil } ?? "job_" + FileStore.newID()
        let images = try await job(id)
        var response = try service.answer(images, r, baseURL: baseURL(request), extra: extra)
        response.headers[.jobID] = id
        return response
    }

    private func requireImageEncoder(_ what: String) throws {
        guard service.model.hasImageEncoder else {
            throw APIError(.badRequest, "The model '\(service.modelName)' has no CLIP image encoder, which \(what) need.", code: "unsupported_model")
        }
    }

    /// The start of `url`s: the configured public URL, else this request's own host.
    private func baseURL(_ request: Request) -> String {
        if let base = service.configuration.publicBaseURL { return base }
        let c = service.configuration
        return "http://" + (request.head.authority ?? "\(c.host):\(c.port)")
    }

    private func json(_ request: Request, _ body: RequestBody) async throws -> RequestFields {
        let limit = service.configuration.maxJSONBytes
        var bytes: [UInt8] = []
        try await FormData.readChunks(body) { chunk in
            guard bytes.count + chunk.readableBytes <= limit else { throw APIError.tooLarge(limit: limit) }
            bytes += chunk.readableBytesView
        }
        return try RequestFields.parseJSON(bytes)
    }

    private func form(_ request: Request, _ body: RequestBody) async throws -> FormData {
        try await FormData.read(body, contentType: request.headers[.contentType],
                                contentLength: request.headers[.contentLength].flatMap { Int($0) },
                                maxBytes: service.configuration.maxMultipartBytes, maxFileBytes: PNGInput.maxBytes)
    }
}

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
        let q = try GenerationRequest(try await RequestFields.read(body, maxBytes: service.configuration.maxJSONBytes),
                                      models: service.modelNames)
        let options = service.samplingOptions(q.image), seed = q.image.seed ?? .random(in: 0...UInt64.max)
        return try await answer(request, q.image) { id in
            try await service.generate(q.prompt, options: options, seed: seed, job: id)
        }
    }

    /// Variations as the API made them: the image's CLIP embedding, fresh decoder noise (diffusers'
    /// `UnCLIPImageVariationPipeline`). With the extension field `eta`, the paper's instead (§3.1): the decoder
    /// latent from DDIM inversion of the image, sampled at η.
    func variations(_ request: Request, _ body: RequestBody) async throws -> Response {
        let q = try VariationRequest(try await form(request, body), models: service.modelNames, maxSide: maxSide)
        try requireImageEncoder("variations")
        let r = q.image, image = q.input
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
        let q = try EditRequest(try await form(request, body), models: service.modelNames, maxSide: maxSide)
        let options = service.samplingOptions(q.image), seed = q.image.seed ?? .random(in: 0...UInt64.max)
        let inpainting = service.inpaintingOptions(options)
        return try await answer(request, "edits", q.image) { pipeline, progress in
            var noise = SeededNoise(seed: seed)
            return try pipeline.edit(q.input, mask: q.mask, prompt: q.prompt, options: options, inpainting: inpainting,
                                     noise: &noise, progress: progress)
        }
    }

    // MARK: Extensions (not in the OpenAI API)

    /// `image` → `image2` through CLIP image-embedding space (unCLIP §3.2), each entry with its `theta`.
    func interpolations(_ request: Request, _ body: RequestBody) async throws -> Response {
        let q = try InterpolationRequest(try await form(request, body), models: service.modelNames, maxSide: maxSide)
        try requireImageEncoder("interpolations")
        let ddim = service.ddimOptions(q.image), seed = q.image.seed ?? .random(in: 0...UInt64.max)
        return try await answer(request, "interpolations", q.image, extra: q.thetas.map { ["theta": $0] }) { pipeline, progress in
            var noise = SeededNoise(seed: seed)
            return try pipeline.interpolate(q.first, q.second, frames: q.image.n, latent: q.latent, options: ddim,
                                            noise: &noise, progress: progress).images
        }
    }

    /// A text diff (unCLIP §3.3): the image's embedding turned toward `to` − `from`, one frame per θ.
    func textDiffs(_ request: Request, _ body: RequestBody) async throws -> Response {
        let q = try TextDiffRequest(try await form(request, body), models: service.modelNames, maxSide: maxSide)
        try requireImageEncoder("text diffs")
        let ddim = service.ddimOptions(q.image), seed = q.image.seed ?? .random(in: 0...UInt64.max)
        return try await answer(request, "text-diffs", q.image, extra: q.thetas.map { ["theta": Double($0)] }) { pipeline, progress in
            var noise = SeededNoise(seed: seed)
            return try pipeline.textDiff(q.input, from: q.source, to: q.target, thetas: q.thetas, options: ddim,
                                         noise: &noise, progress: progress)
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

    private var maxSide: Int { service.configuration.maxInputSide }

    private func form(_ request: Request, _ body: RequestBody) async throws -> FormData {
        try await FormData.read(body, contentType: request.headers[.contentType],
                                contentLength: request.headers[.contentLength].flatMap { Int($0) },
                                maxBytes: service.configuration.maxMultipartBytes, maxFileBytes: PNGInput.maxBytes)
    }
}

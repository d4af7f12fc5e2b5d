import Hummingbird

/// The web dashboard: one page, its script and its style sheet, compiled into the binary (no
/// CDN, nothing fetched at run time, no build step). The page asks for the token once and keeps
/// it in the browser's local storage; it calls the JSON API and reads the event streams with
/// `fetch` (so the token travels in the `Authorization` header, never in a URL). Every answer
/// carries a Content-Security-Policy that allows only the page's own script and style.
enum Dashboard {
    static let policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    static func routes(_ router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in page(DashboardFiles.html, "text/html; charset=utf-8") }
        router.get("ui/app.js") { _, _ in page(DashboardFiles.script, "text/javascript; charset=utf-8") }
        router.get("ui/app.css") { _, _ in page(DashboardFiles.style, "text/css; charset=utf-8") }
        // HEAD answers as GET does, without the body (link checkers and uptime probes ask it).
        router.head("/") { _, _ in head(DashboardFiles.html, "text/html; charset=utf-8") }
        router.head("ui/app.js") { _, _ in head(DashboardFiles.script, "text/javascript; charset=utf-8") }
        router.head("ui/app.css") { _, _ in head(DashboardFiles.style, "text/css; charset=utf-8") }
    }

    static func head(_ text: String, _ type: String) -> Response {
        var r = page(text, type)
        r.body = ResponseBody()
        r.headers[.contentLength] = String(text.utf8.count)
        return r
    }

    static func page(_ text: String, _ type: String) -> Response {
        Response(status: .ok,
                 headers: [.contentType: type, .contentSecurityPolicy: policy, .cacheControl: "no-cache",
                           HTTPFields.Element.Name("X-Content-Type-Options")!: "nosniff", HTTPFields.Element.Name("Referrer-Policy")!: "no-referrer"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

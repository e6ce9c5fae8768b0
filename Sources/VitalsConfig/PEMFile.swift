import Foundation

/// The PEM blocks of a file (RFC 7468): `-----BEGIN LABEL-----`, base64, `-----END LABEL-----`, for
/// checking that a TLS file holds what its key says before libmosquitto and OpenSSL read it at the
/// first connect (where a wrong file became a raw OpenSSL error, retried forever).
struct PEMFile {
    struct Block {
        /// The label, e.g. `CERTIFICATE`, `PRIVATE KEY`.
        var label: String
        /// The decoded bytes (DER); nil when the base64 text does not decode.
        var der: Data?
        /// True when an RFC 1421 header says the key is encrypted (`Proc-Type: 4,ENCRYPTED`).
        var encryptedHeader: Bool
    }

    var blocks: [Block] = []

    init(text: String) {
        var label: String?
        var body = ""
        var encrypted = false
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if label == nil, line.hasPrefix("-----BEGIN "), line.hasSuffix("-----") {
                label = String(line.dropFirst(11).dropLast(5))
                body = ""
                encrypted = false
            } else if let open = label, line == "-----END \(open)-----" {
                blocks.append(Block(label: open, der: Data(base64Encoded: body), encryptedHeader: encrypted))
                label = nil
            } else if label != nil {
                if line.contains(":") {
                    if line.hasPrefix("Proc-Type:") && line.contains("ENCRYPTED") { encrypted = true }
                } else {
                    body += line
                }
            }
        }
    }

    /// Labels of private keys OpenSSL reads without a passphrase.
    static let keyLabels: Set<String> = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]

    /// The problem with `path` as the file of `key` (`mqtt.tls_ca_file`, `mqtt.tls_cert_file` or
    /// `mqtt.tls_key_file`), or nil when it holds PEM blocks of the right kind (X.509 certificates,
    /// or one unencrypted private key) whose contents decode as DER sequences.
    static func problem(path: String, key: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }  // reported as unreadable elsewhere
        let blocks = PEMFile(text: String(decoding: data, as: UTF8.self)).blocks
        let wantsKey = key == "mqtt.tls_key_file"
        let expected = wantsKey ? "a PEM private key (-----BEGIN PRIVATE KEY-----)" : "PEM certificates (-----BEGIN CERTIFICATE-----)"
        guard !blocks.isEmpty else { return "\(path) is not \(expected): it holds no PEM block" }
        for block in blocks where block.der.map({ $0.first != 0x30 }) ?? true {
            return "\(path) is not \(expected): its \(block.label) block is not valid base64 DER"
        }
        if wantsKey {
            if blocks.contains(where: { $0.label == "ENCRYPTED PRIVATE KEY" || $0.encryptedHeader }) {
                return "\(path) holds an encrypted private key; vitalsd cannot ask for its passphrase: store it unencrypted (openssl pkey -in KEY -out KEY.plain) and protect the file (mode 0600, LoadCredential=)"
            }
            let keys = blocks.filter { keyLabels.contains($0.label) }
            let others = blocks.filter { !keyLabels.contains($0.label) && $0.label != "EC PARAMETERS" }
            if let other = others.first { return "\(path) holds a \(other.label) where \(expected) belongs" }
            if keys.count != 1 { return "\(path) holds \(keys.count) private keys; it must hold one" }
            return nil
        }
        if let other = blocks.first(where: { $0.label != "CERTIFICATE" && $0.label != "TRUSTED CERTIFICATE" }) {
            return "\(path) holds a \(other.label) where \(expected) belong"
        }
        return nil
    }
}

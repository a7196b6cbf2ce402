//! Reading HTTP bodies from servers regcred does not control (token
//! endpoints, registries) with a size limit: a broken or hostile server
//! cannot make the operator buffer an unbounded answer.

/// Largest body regcred reads from a token endpoint or a registry error.
pub const MAX_BODY: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// The body of `response`, or [`BodyError::TooLarge`] as soon as more than
/// `max` bytes arrived (whatever `Content-Length` claimed).
pub async fn read(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that streams `size` bytes without a Content-Length.
    async fn serve(size: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = vec![b'a'; 8192];
            let mut sent = 0;
            while sent < size {
                let head = format!("{:x}\r\n", chunk.len());
                if s.write_all(head.as_bytes()).await.is_err()
                    || s.write_all(&chunk).await.is_err()
                    || s.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
                sent += chunk.len();
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn stops_reading_past_the_limit() {
        let url = serve(64 * 1024 * 1024).await;
        let response = reqwest::get(&url).await.unwrap();
        assert!(matches!(read(response, MAX_BODY).await, Err(BodyError::TooLarge(_))));

        let url = serve(16 * 1024).await;
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(read(response, MAX_BODY).await.unwrap().len(), 16 * 1024);
    }
}

//! Golden bytes: every message's encoding is frozen here. A failing test means the encoding
//! changed: that is a protocol change, so bump `PROTOCOL_VERSION` and update the bytes on purpose.

use super::*;
use alloc::string::ToString;
use alloc::vec;

fn hex(bytes: &[u8]) -> alloc::string::String {
    bytes.iter().map(|b| alloc::format!("{b:02x}")).collect()
}

fn check<T>(msg: T, golden: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + core::fmt::Debug,
{
    let frame = encode(&msg).unwrap();
    assert_eq!(hex(&frame), golden, "encoding of {msg:?}");
    assert_eq!(decode::<T>(&frame).unwrap(), msg);
}

fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        runtime_version: "0.1.0".to_string(),
        target: "aarch64-unknown-linux-musl".to_string(),
        isa: "neon".to_string(),
        cpu_features: vec!["neon".to_string(), "dotprod".to_string()],
        cores: 4,
        total_ram_bytes: 8 << 30,
        available_ram_bytes: 6 << 30,
        cpu_model: "Raspberry Pi 5 Model B Rev 1.0".to_string(),
        kernel: "6.6.31+rpt-rpi-2712".to_string(),
        gpu: Some(Gpu {
            backend: "cuda".to_string(),
            name: "Orin".to_string(),
            compute_capability: "8.7".to_string(),
            memory_bytes: 7 << 30,
            used: true,
            note: "PTX compute_87".to_string(),
        }),
    }
}

#[test]
fn request_hello() {
    check(
        Request::Hello {
            protocol_version: PROTOCOL_VERSION,
            planner_version: "0.1.0".to_string(),
        },
        "01080605302e312e3000",
    );
}

#[test]
fn request_probe_memory() {
    check(
        Request::ProbeMemory {
            bytes: 256 << 20,
            threads: 0,
            repetitions: 3,
        },
        "07018080808001020300",
    );
}

#[test]
fn request_load_model() {
    check(
        Request::LoadModel {
            path: "m.gguf".to_string(),
            sha256: Some([0xab; 32]),
        },
        "2a02066d2e6767756601abababababababababababababababababababababababababababababababab00",
    );
    check(
        Request::LoadModel {
            path: "m.gguf".to_string(),
            sha256: None,
        },
        "0902066d2e676775660100",
    );
}

#[test]
fn request_bench() {
    check(
        Request::Bench(BenchRequest {
            n_prompt: 512,
            n_gen: 128,
            threads: 4,
            repetitions: 5,
            kv_f32: false,
        }),
        "08038004800104050100",
    );
}

#[test]
fn request_perplexity() {
    let req = |logits| {
        Request::Perplexity(PerplexityRequest {
            text: "Hi".to_string(),
            n_ctx: 512,
            max_chunks: Some(2),
            threads: 0,
            logits,
        })
    };
    check(req(LogitsMode::None), "090402486980040102010100");
    check(
        req(LogitsMode::Save {
            path: "b.logits".to_string(),
        }),
        "0904024869800401020b0108622e6c6f6769747300",
    );
    check(
        req(LogitsMode::KlDivergence {
            base_path: "b.logits".to_string(),
        }),
        "0904024869800401020b0208622e6c6f6769747300",
    );
}

#[test]
fn request_generate() {
    check(
        Request::Generate(GenerateRequest {
            prompt: "Hi".to_string(),
            n_predict: 16,
            threads: 2,
            temp: 0.5,
            top_k: 40,
            top_p: 0.95,
            seed: 7,
            chat: true,
        }),
        "070502486910020101093f283333733f070100",
    );
}

#[test]
fn request_shutdown() {
    check(Request::Shutdown, "020600");
}

#[test]
fn request_calibrate() {
    check(
        Request::Calibrate(CalibrateRequest {
            text: "hi".to_string(),
            dataset: "c.txt".to_string(),
            n_ctx: 512,
            max_chunks: Some(8),
            threads: 2,
            output_path: "/t/i.gguf".to_string(),
        }),
        "1a0702686905632e7478748004010802092f742f692e6767756600",
    );
}

#[test]
fn response_calibrated() {
    check(
        Response::Calibrated(CalibrateResult {
            path: "/t/i.gguf".to_string(),
            n_tokens: 4096,
            n_chunks: 8,
            seconds: 2.5,
            block_influence: vec![0.5, 0.25],
        }),
        "0f0a092f742f692e676775668020080101010101040440020101023f0103803e00",
    );
}

#[test]
fn response_hello() {
    check(Response::Hello(hello()), "01980605302e312e301a616172636836342d756e6b6e6f776e2d6c696e75782d6d75736c046e656f6e02046e656f6e07646f7470726f6404808080802080808080181e5261737062657272792050692035204d6f64656c20422052657620312e3013362e362e33312b7270742d7270692d32373132010463756461044f72696e03382e37808080801c010e50545820636f6d707574655f383700");
}

#[test]
fn response_progress() {
    check(
        Response::Progress(Progress {
            done: 1,
            total: 4,
            note: "PPL 9.5".to_string(),
        }),
        "0c0101040750504c20392e3500",
    );
}

#[test]
fn response_memory_bandwidth() {
    check(
        Response::MemoryBandwidth(MemoryBandwidth {
            bytes: 1 << 20,
            threads: 2,
            read_gb_s: 10.5,
            write_gb_s: 5.25,
        }),
        "0602808040020101010101032540010101010103154000",
    );
}

#[test]
fn response_model_loaded() {
    check(
        Response::ModelLoaded(ModelInfo {
            path: "m.gguf".to_string(),
            sha256: [1; 32],
            architecture: "llama".to_string(),
            n_params: 134_515_008,
            tensor_bytes: 96_573_504,
            file_bytes: 98_000_000,
            n_layers: 30,
            n_vocab: 49152,
            n_ctx_train: 8192,
            load_ms: 1.5,
        }),
        "4103066d2e676775660101010101010101010101010101010101010101010101010101010101010101056c6c616d61c0929240c0b0862e80b9dd2e1e8080038040010101010103f83f00",
    );
}

#[test]
fn response_bench() {
    check(
        Response::Bench(BenchResult {
            isa: "neon".to_string(),
            threads: 4,
            kv_type: "f16".to_string(),
            runs: vec![
                BenchRun {
                    n_prompt: 512,
                    n_gen: 0,
                    samples_tok_s: vec![100.0, 102.0],
                },
                BenchRun {
                    n_prompt: 0,
                    n_gen: 128,
                    samples_tok_s: vec![20.0],
                },
            ],
            peak_rss_bytes: 100 << 20,
            load: Some(MachineLoad {
                load_avg_1m: 0.5,
                others_cpu_share: 0.25,
            }),
        }),
        "0f04046e656f6e04036631360280040202010101010103594001010101048059400480010101010101010834408080803201010101010103e03f010101010103d03f00",
    );
}

#[test]
fn response_perplexity() {
    let res = |kld| {
        Response::Perplexity(PerplexityResult {
            ppl: 10.0,
            ppl_err: 0.5,
            n_tokens: 1024,
            n_scored: 510,
            n_chunks: 2,
            seconds: 3.0,
            kld,
        })
    };
    check(
        res(None),
        "02050101010101032440010101010108e03f8008fe030201010101010308400100",
    );
    check(
        res(Some(KlDivergence {
            kld_mean: 0.25,
            kld_err: 0.125,
            same_top: 0.75,
            same_top_err: 0.0625,
            ppl_base: 9.5,
        })),
        "02050101010101032440010101010108e03f8008fe0302010101010104084001010101010103d03f010101010103c03f010101010103e83f010101010103b03f010101010103234000",
    );
}

#[test]
fn response_token() {
    check(
        Response::Token {
            text: "é".to_string(),
        },
        "050602c3a900",
    );
}

#[test]
fn response_generated() {
    check(
        Response::Generated(GenerateResult {
            n_prompt: 3,
            n_gen: 2,
            prompt_tok_s: 30.0,
            gen_tok_s: 20.0,
            text: "ok".to_string(),
        }),
        "040703020101010101033e400101010101063440026f6b00",
    );
}

#[test]
fn response_bye() {
    check(Response::Bye, "020800");
}

#[test]
fn response_error() {
    for (i, kind) in [
        ErrorKind::BadFrame,
        ErrorKind::ProtocolMismatch,
        ErrorKind::NoHello,
        ErrorKind::NoModel,
        ErrorKind::ModelLoad,
        ErrorKind::Checksum,
        ErrorKind::InvalidRequest,
        ErrorKind::Io,
        ErrorKind::Evaluation,
        ErrorKind::Refused,
    ]
    .into_iter()
    .enumerate()
    {
        // Variant 9 (Error), the kind's index, the message "x" (length 1, 'x'), COBS around it
        // (kind 0 is a zero byte that COBS replaces).
        let golden = if i == 0 {
            "020903017800".to_string()
        } else {
            alloc::format!("0509{i:02x}017800")
        };
        check(
            Response::Error(RuntimeError {
                kind,
                message: "x".to_string(),
            }),
            &golden,
        );
    }
}

#[test]
fn hello_version_is_read_from_any_hello() {
    let frame = encode(&Response::Hello(hello())).unwrap();
    assert_eq!(hello_protocol_version(&frame), Some(PROTOCOL_VERSION));
    // A future Hello of another shape: only variant 0 and the version are read.
    let future = encode(&(0u8, 7u32, 1.5f64, "more")).unwrap();
    assert_eq!(hello_protocol_version(&future), Some(7));
    assert_eq!(
        hello_protocol_version(&encode(&Response::Bye).unwrap()),
        None
    );
    assert_eq!(hello_protocol_version(&[0x13, 0x37]), None);
}

#[test]
fn malformed_frames_are_errors() {
    // Not COBS: the first code byte points past the end.
    assert!(matches!(
        decode::<Request>(&[0x09, 0x01]),
        Err(FrameError::Cobs { len: 2 })
    ));
    // Valid COBS, unknown variant 200.
    let frame = encode(&(200u8,)).unwrap();
    let err = decode::<Request>(&frame).unwrap_err();
    assert!(matches!(err, FrameError::Message { .. }), "{err}");
    // A whole message with bytes after it.
    let frame = encode(&(6u8, 1u8)).unwrap();
    assert_eq!(
        decode::<Request>(&frame),
        Err(FrameError::Trailing { len: 3, extra: 1 })
    );
    // Empty frame.
    assert!(decode::<Request>(&[]).is_err());
    // A string that is not UTF-8.
    let frame = encode(&(7u8, 1u8, 0xffu8)).unwrap();
    assert!(decode::<Response>(&frame).is_err());
}

#[cfg(feature = "std")]
#[test]
fn stream_frames_resynchronize_after_garbage() {
    let mut bytes = vec![0x09, 0x01, 0x00];
    bytes.extend(encode(&Request::Shutdown).unwrap());
    bytes.extend([0x05, 0x01]);
    let mut r = std::io::Cursor::new(bytes);
    let mut buf = Vec::new();
    assert!(read_frame(&mut r, &mut buf).unwrap());
    assert!(decode::<Request>(&buf).is_err());
    assert!(read_frame(&mut r, &mut buf).unwrap());
    assert_eq!(decode::<Request>(&buf).unwrap(), Request::Shutdown);
    let err = read_frame(&mut r, &mut buf).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().contains("after 2 bytes"), "{err}");
    let mut empty = std::io::Cursor::new(Vec::new());
    assert!(!read_frame(&mut empty, &mut buf).unwrap());
}

#[test]
fn request_spec_bench() {
    check(
        Request::SpecBench(SpecBenchRequest {
            draft_path: "models/draft.gguf".to_string(),
            draft_sha256: None,
            prompt: "hi".to_string(),
            n_gen: 64,
            repetitions: 3,
            threads: 2,
        }),
        "1408116d6f64656c732f64726166742e676775660702686940030200",
    );
}

#[test]
fn response_spec_bench() {
    check(
        Response::SpecBench(SpecBenchResult {
            n_prompt: 5,
            n_gen: 64,
            plain_tok_s: vec![100.0],
            spec_tok_s: vec![150.0],
            drafted: 90,
            accepted: 60,
        }),
        "050b0540010101010101045940010101010106c062405a3c00",
    );
}

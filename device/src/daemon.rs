//! `power-meter run`: the meter daemon. A sampling thread reads the INA219 on a
//! fixed tick (aligned to wall-clock multiples of `sample_ms`) and pings the
//! systemd watchdog; the async side turns samples into windows, signs each into
//! the durable outbox, sends the outbox, polls rewards, and writes the state
//! file about once a second. SIGTERM or Ctrl-C: stop sampling, store the partial
//! window, try one last send, write the state, exit 0.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use embedded_hal::i2c::I2c;
use tokio::sync::{Notify, mpsc, watch};
use wattstream_sdk::client::ProcessorClient;
use wattstream_sdk::notify;
use wattstream_sdk::state::{ClockStatus, LinkState, MeterState, RewardsState, STATE_VERSION, SensorState};
use wattstream_sdk::{DeviceKey, load_key};

use crate::config::MeterConfig;
use crate::outbox::Outbox;
use crate::sensor::emulator::EmulatedIna219;
use crate::sensor::load::{LoadModel, NoisyLoad};
use crate::sensor::{Sample, Sensor, SensorError};
use crate::uplink::{Backoff, Sender, Uplink};
use crate::window::{Window, Windower};

use wattstream_sdk::time::unix_now_ms as unix_ms;

/// A source of samples: the real or the emulated bus behind the same driver.
type Reader = Box<dyn FnMut() -> Result<Option<Sample>, SensorError> + Send>;

fn reader_for<I: I2c + Send + 'static>(mut sensor: Sensor<I>) -> Reader
where
    I::Error: std::fmt::Debug,
{
    Box::new(move || sensor.read())
}

/// Opens the sensor: the emulated chip with `--sim`, `/dev/i2c-*` otherwise.
fn open_sensor(cfg: &MeterConfig, sim: bool) -> Result<Reader> {
    let cal = cfg.calibration();
    if sim {
        let model = match cfg.sim.profile.as_str() {
            "constant" => LoadModel::Constant {
                volts: cfg.sim.volts,
                watts: cfg.sim.watts,
            },
            "csv" => LoadModel::from_csv(cfg.sim.csv.as_deref().expect("checked by config"), cfg.sim.volts)?,
            _ => LoadModel::DemoBoard {
                volts: cfg.sim.volts,
                step_s: cfg.sim.step_s,
            },
        };
        let chip = EmulatedIna219::new(
            cal.address,
            cal.shunt_ohms,
            NoisyLoad::new(model, cfg.sim.noise, cfg.sim.seed),
            Box::new(|| unix_ms() as f64 / 1000.0),
        );
        return Ok(reader_for(Sensor::new(chip, &cal)?));
    }
    let bus = &cfg.sensor.i2c_bus;
    let i2c = linux_embedded_hal::I2cdev::new(bus).map_err(|e| {
        anyhow!(
            "cannot open the I2C bus {}: {e}. On a Raspberry Pi enable I2C (`sudo raspi-config nonint do_i2c 0`) \
             and check the wiring; to run without hardware use --sim",
            bus.display()
        )
    })?;
    let sensor =
        Sensor::new(i2c, &cal).with_context(|| format!("no INA219 answering on {}", bus.display()))?;
    Ok(reader_for(sensor))
}

/// What the sampling thread reports.
struct Tick {
    t_ms: u64,
    sample: Option<Sample>,
}

struct SensorCounters {
    errors: AtomicU64,
    missed: AtomicU64,
}

fn sampling_thread(
    mut read: Reader,
    sample_ms: u64,
    retries: u32,
    tx: mpsc::UnboundedSender<Tick>,
    stop: Arc<AtomicBool>,
    counters: Arc<SensorCounters>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("sampler".into())
        .spawn(move || {
            let mut watchdog = notify::Watchdog::from_env();
            let mut next = (unix_ms() / sample_ms + 1) * sample_ms;
            while !stop.load(Ordering::Relaxed) {
                let now = unix_ms();
                if now < next {
                    std::thread::sleep(Duration::from_millis(next - now));
                } else if now >= next + sample_ms {
                    // Fell behind (suspended, overloaded): skip the ticks that passed.
                    let skipped = (now - next) / sample_ms;
                    counters.missed.fetch_add(skipped, Ordering::Relaxed);
                    next += skipped * sample_ms;
                }
                let mut sample = None;
                for attempt in 0..=retries {
                    match read() {
                        Ok(Some(s)) => {
                            sample = Some(s);
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                        Err(e) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            if attempt == retries {
                                tracing::warn!(error = %e, "sensor read failed after {} attempts", retries + 1);
                            }
                        }
                    }
                }
                if sample.is_none() {
                    counters.missed.fetch_add(1, Ordering::Relaxed);
                }
                watchdog.ping();
                if tx.send(Tick { t_ms: next, sample }).is_err() {
                    return;
                }
                next += sample_ms;
            }
        })
        .expect("spawn the sampling thread")
}

/// What the state file is made from.
struct Live {
    device_id: String,
    window_s: u64,
    power_w: Option<f64>,
    window_w: Option<f64>,
    history: VecDeque<f64>,
    history_len: usize,
    day: u64,
    energy_today_wh: f64,
}

impl Live {
    fn window(&mut self, w: &Window) {
        self.window_w = Some(w.avg_w);
        self.history.push_back(w.avg_w);
        while self.history.len() > self.history_len {
            self.history.pop_front();
        }
        let day = w.end_ms / 86_400_000;
        if day != self.day {
            self.day = day;
            self.energy_today_wh = 0.0;
        }
        self.energy_today_wh += w.energy_wh;
    }
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub fn run(cfg: MeterConfig, sim: bool) -> Result<()> {
    let key = load_key(&cfg.key)
        .with_context(|| "cannot load the device key (create one with `power-meter keygen`)")?;
    let read = open_sensor(&cfg, sim)?;
    // Nothing is signed, and no outbox made, before the clock can be trusted.
    let clock = crate::clock::wait_for_sync(
        &cfg.clock_sync_command,
        &key.device_id().to_string(),
        cfg.window_s,
        &cfg.state_path(),
    );
    let outbox = Outbox::open(&cfg.data_dir, cfg.uplink.outbox_max)?
        .with_dead_letter_limit(cfg.uplink.dead_letter_max_bytes);
    tracing::info!(
        device = %key.device_id(),
        processor = %cfg.processor,
        simulated = sim,
        next_seq = outbox.next_seq()?,
        outbox = outbox.depth()?,
        "power-meter starting"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(cfg, sim, key, read, outbox, clock))
}

async fn run_async(
    cfg: MeterConfig,
    sim: bool,
    key: DeviceKey,
    read: Reader,
    outbox: Outbox,
    clock: ClockStatus,
) -> Result<()> {
    let timeout = Duration::from_secs(cfg.uplink.timeout_s);
    let sender = if cfg.over_mqtt() {
        let settings = crate::mqtt::MqttSettings {
            username: cfg.mqtt.username.clone(),
            password_file: cfg.mqtt.password_file.clone(),
            ca: cfg.tls_ca.clone(),
        };
        Sender::Mqtt(crate::mqtt::MqttLink::start(
            &cfg.processor,
            &key.device_id().to_string(),
            &settings,
            timeout,
        )?)
    } else {
        Sender::Http(ProcessorClient::with_ca(
            &cfg.processor,
            None,
            timeout,
            cfg.tls_ca.as_deref(),
        )?)
    };
    let rewards_client = match cfg.rewards_base() {
        Some(base) => Some(ProcessorClient::with_ca(
            base,
            None,
            timeout,
            cfg.tls_ca.as_deref(),
        )?),
        None => {
            tracing::warn!(
                "processor is an MQTT broker and rewards_url is not set: no rewards on the screen"
            );
            None
        }
    };
    let outbox = Arc::new(Mutex::new(outbox));
    let link = Arc::new(Mutex::new(LinkState::default()));
    let rewards = Arc::new(Mutex::new(RewardsState::default()));
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);

    let stop_sampling = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(SensorCounters {
        errors: AtomicU64::new(0),
        missed: AtomicU64::new(0),
    });
    let (tick_tx, mut ticks) = mpsc::unbounded_channel();
    let sampler = sampling_thread(
        read,
        cfg.sample_ms,
        cfg.sensor.retries,
        tick_tx,
        stop_sampling.clone(),
        counters.clone(),
    );

    let uplink = Uplink {
        sender: sender.clone(),
        outbox: outbox.clone(),
        link: link.clone(),
        wake: wake.clone(),
        batch: cfg.uplink.batch,
    };
    let backoff = Backoff::new(
        Duration::from_millis(cfg.uplink.backoff_min_ms),
        Duration::from_secs(cfg.uplink.backoff_max_s),
        unix_ms(),
    );
    let uplink_task = tokio::spawn(uplink.run(backoff, stop_rx.clone()));
    let pinned = match &cfg.processor_public_key {
        Some(hex) => Some(
            wattstream_sdk::PublicKey::from_hex(hex.trim())
                .map_err(|e| anyhow!("processor_public_key: {e}"))?,
        ),
        None => None,
    };
    let rewards_task = rewards_client.map(|client| {
        tokio::spawn(crate::rewards::poll_rewards(
            client,
            key.device_id(),
            pinned,
            rewards.clone(),
            Duration::from_secs(cfg.uplink.rewards_poll_s.max(1)),
            stop_rx.clone(),
        ))
    });

    let window_ms = cfg.window_s * 1000;
    let mut windower = Windower::new(
        window_ms,
        cfg.sample_ms,
        (cfg.sample_ms * 10).max(1000).min(window_ms),
    );
    let mut live = Live {
        device_id: key.device_id().to_string(),
        window_s: cfg.window_s,
        power_w: None,
        window_w: None,
        history: VecDeque::new(),
        history_len: (600 / cfg.window_s).max(1) as usize,
        day: unix_ms() / 86_400_000,
        energy_today_wh: 0.0,
    };
    let state_path = cfg.state_path();
    let write_state = |live: &Live| {
        let state = MeterState {
            version: STATE_VERSION,
            time: unix_ms() / 1000,
            device_id: live.device_id.clone(),
            power_w: live.power_w,
            window_w: live.window_w,
            window_s: live.window_s,
            energy_today_wh: live.energy_today_wh,
            history_w: live.history.iter().copied().collect(),
            link: {
                let mut l = link.lock().expect("link lock").clone();
                let o = outbox.lock().expect("outbox lock");
                l.outbox_depth = o.depth().unwrap_or(0);
                l.dropped = o.dropped().unwrap_or(0);
                l.dead_lettered = o.dead_lettered().unwrap_or(0);
                l.conflicts = o.conflicts().unwrap_or(0);
                l
            },
            rewards: rewards.lock().expect("rewards lock").clone(),
            sensor: SensorState {
                errors: counters.errors.load(Ordering::Relaxed),
                missed: counters.missed.load(Ordering::Relaxed),
                simulated: sim,
            },
            clock,
        };
        if let Err(e) = state.write(&state_path) {
            tracing::warn!(error = %e, "could not write the state file");
        }
    };
    let store = |w: &Window| -> Result<()> {
        let entry = outbox.lock().expect("outbox lock").append(&key, w.reading())?;
        tracing::debug!(seq = entry.seq, watts = w.avg_w, "window stored");
        wake.notify_one();
        Ok(())
    };

    write_state(&live);
    notify::ready();
    let mut state_tick = tokio::time::interval(Duration::from_secs(1));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            tick = ticks.recv() => {
                let Some(tick) = tick else { break };
                let Some(sample) = tick.sample else { continue };
                live.power_w = Some(sample.watts);
                for w in windower.push(tick.t_ms, sample) {
                    store(&w)?;
                    live.window(&w);
                    let l = link.lock().expect("link lock").clone();
                    notify::status(&format!("{:.2} W over the last window; link {:?}; outbox {}", w.avg_w, l.status, l.outbox_depth));
                }
            }
            _ = state_tick.tick() => write_state(&live),
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    tracing::info!("stopping: storing the partial window and sending what can be sent");
    notify::stopping();
    stop_sampling.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || sampler.join()).await;
    while let Ok(tick) = ticks.try_recv() {
        if let Some(sample) = tick.sample {
            for w in windower.push(tick.t_ms, sample) {
                store(&w)?;
                live.window(&w);
            }
        }
    }
    if let Some(w) = windower.flush() {
        store(&w)?;
        live.window(&w);
    }
    let _ = stop_tx.send(true);
    let _ = uplink_task.await;
    if let Some(task) = rewards_task {
        let _ = task.await;
    }
    Uplink {
        sender,
        outbox: outbox.clone(),
        link: link.clone(),
        wake,
        batch: cfg.uplink.batch,
    }
    .flush(Duration::from_secs(3))
    .await;
    write_state(&live);
    tracing::info!(
        outbox = outbox.lock().expect("outbox lock").depth()?,
        "power-meter stopped"
    );
    Ok(())
}

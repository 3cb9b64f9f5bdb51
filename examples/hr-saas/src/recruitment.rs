//! Recruitment: job openings and their candidates.
//!
//! | route | answer |
//! |---|---|
//! | `GET /recruitment/openings` | a list of [`Opening`] |
//! | `POST /recruitment/openings` with a [`NewOpening`] | 201 [`Opening`] |
//! | `GET /recruitment/openings/{id}` | [`Opening`]; 404 unknown |
//! | `POST /recruitment/openings/{id}/candidates` with a [`NewCandidate`] | 201 [`Candidate`]; 404 unknown, 409 closed |
//! | `POST /recruitment/openings/{id}/candidates/{candidate_id}/hire` | [`Candidate`]; 404 unknown, 409 filled |
//!
//! A background task, started with the module and cancelled with it, closes every opening
//! whose headcount has been hired every `sweep_interval` (see [`RecruitmentConfig`]).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{
        Path, State,
        rejection::{JsonRejection, PathRejection},
    },
    http::StatusCode,
    routing::{get, post},
};
use koupleless::{Manifest, Module, ModuleContext, ModuleError};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::api::ApiError;

/// `[modules.recruitment]`: the module's own configuration keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecruitmentConfig {
    /// How often filled openings are closed, e.g. `"5s"`.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for RecruitmentConfig {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(5),
        }
    }
}

/// Whether an opening takes candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpeningStatus {
    /// Taking candidates.
    Open,
    /// Headcount hired; no more candidates.
    Closed,
}

/// A job opening.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opening {
    /// Assigned by the module.
    pub id: u64,
    /// Job title.
    pub title: String,
    /// People to hire.
    pub headcount: u32,
    /// Open or closed.
    pub status: OpeningStatus,
    /// Candidates hired so far.
    pub hired: u32,
    /// Every candidate, in order of application.
    pub candidates: Vec<Candidate>,
}

/// Body of `POST /recruitment/openings`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOpening {
    /// Job title, not blank.
    pub title: String,
    /// People to hire, at least 1.
    pub headcount: u32,
}

/// A candidate for an opening.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Assigned by the module, unique across openings.
    pub id: u64,
    /// Full name.
    pub name: String,
    /// Whether the candidate was hired.
    pub hired: bool,
}

/// Body of `POST /recruitment/openings/{id}/candidates`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCandidate {
    /// Full name, not blank.
    pub name: String,
}

#[derive(Debug, Default)]
struct Board {
    next_opening: u64,
    next_candidate: u64,
    openings: BTreeMap<u64, Opening>,
}

impl Board {
    fn open(&mut self, title: String, headcount: u32) -> Opening {
        self.next_opening += 1;
        let opening = Opening {
            id: self.next_opening,
            title,
            headcount,
            status: OpeningStatus::Open,
            hired: 0,
            candidates: Vec::new(),
        };
        self.openings.insert(opening.id, opening.clone());
        opening
    }

    fn opening_mut(&mut self, id: u64) -> Result<&mut Opening, ApiError> {
        self.openings
            .get_mut(&id)
            .ok_or_else(|| unknown_opening(id))
    }

    /// Closes the filled openings and returns their ids.
    fn close_filled(&mut self) -> Vec<u64> {
        self.openings
            .values_mut()
            .filter(|o| o.status == OpeningStatus::Open && o.hired >= o.headcount)
            .map(|o| {
                o.status = OpeningStatus::Closed;
                o.id
            })
            .collect()
    }
}

fn unknown_opening(id: u64) -> ApiError {
    ApiError::not_found(format!("no opening with id {id}"))
}

type SharedBoard = Arc<RwLock<Board>>;

/// The recruitment module, mounted at `/recruitment`.
#[derive(Clone, Debug)]
pub struct Recruitment {
    board: SharedBoard,
}

impl Recruitment {
    /// Recruitment with no openings.
    pub fn empty() -> Self {
        Self {
            board: SharedBoard::default(),
        }
    }

    /// Recruitment with one opening: "Payroll specialist", headcount 2.
    pub fn seeded() -> Self {
        let mut board = Board::default();
        board.open("Payroll specialist".to_owned(), 2);
        Self {
            board: Arc::new(RwLock::new(board)),
        }
    }
}

impl Default for Recruitment {
    /// The [`seeded`](Self::seeded) module.
    fn default() -> Self {
        Self::seeded()
    }
}

#[async_trait::async_trait]
impl Module for Recruitment {
    fn manifest(&self) -> Manifest {
        Manifest::parse("recruitment", env!("CARGO_PKG_VERSION"), "/recruitment")
            .expect("the recruitment manifest is valid")
    }

    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        let config: RecruitmentConfig = ctx.config()?;
        if config.sweep_interval.is_zero() {
            return Err(ModuleError::msg(
                "modules.recruitment.sweep_interval must be above zero",
            ));
        }
        // Spawned through the context so that stopping or replacing this version cancels
        // it; a plain `tokio::spawn` would keep sweeping after the module is gone.
        ctx.spawn(sweep(Arc::clone(&self.board), config.sweep_interval));
        Ok(())
    }

    fn router(&self, _ctx: &ModuleContext) -> Router {
        Router::new()
            .route("/openings", get(list_openings).post(create_opening))
            .route("/openings/{id}", get(get_opening))
            .route("/openings/{id}/candidates", post(add_candidate))
            .route(
                "/openings/{id}/candidates/{candidate_id}/hire",
                post(hire_candidate),
            )
            .with_state(Arc::clone(&self.board))
    }
}

async fn sweep(board: SharedBoard, every: Duration) {
    // The first sweep waits a full interval, like every later one: an immediate sweep at
    // start would only repeat the one the previous activation made.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // After a stall, one sweep catches up with everything; a burst would add nothing.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let closed = board.write().await.close_filled();
        for id in closed {
            tracing::info!(opening = id, "headcount hired; opening closed");
        }
    }
}

async fn list_openings(State(board): State<SharedBoard>) -> Json<Vec<Opening>> {
    Json(board.read().await.openings.values().cloned().collect())
}

async fn get_opening(
    State(board): State<SharedBoard>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<Opening>, ApiError> {
    let Path(id) = id?;
    let board = board.read().await;
    let opening = board.openings.get(&id).ok_or_else(|| unknown_opening(id))?;
    Ok(Json(opening.clone()))
}

async fn create_opening(
    State(board): State<SharedBoard>,
    body: Result<Json<NewOpening>, JsonRejection>,
) -> Result<(StatusCode, Json<Opening>), ApiError> {
    let Json(NewOpening { title, headcount }) = body?;
    let title = title.trim();
    if title.is_empty() {
        return Err(ApiError::bad_request("an opening needs a title"));
    }
    if headcount == 0 {
        return Err(ApiError::bad_request("headcount must be at least 1"));
    }
    let opening = board.write().await.open(title.to_owned(), headcount);
    Ok((StatusCode::CREATED, Json(opening)))
}

async fn add_candidate(
    State(board): State<SharedBoard>,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<NewCandidate>, JsonRejection>,
) -> Result<(StatusCode, Json<Candidate>), ApiError> {
    let Path(id) = id?;
    let Json(NewCandidate { name }) = body?;
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("a candidate needs a name"));
    }
    let mut board = board.write().await;
    let candidate_id = board.next_candidate + 1;
    let opening = board.opening_mut(id)?;
    if opening.status == OpeningStatus::Closed {
        return Err(ApiError::conflict(format!(
            "opening {id} is closed: its headcount has been hired"
        )));
    }
    let candidate = Candidate {
        id: candidate_id,
        name: name.to_owned(),
        hired: false,
    };
    opening.candidates.push(candidate.clone());
    board.next_candidate = candidate_id;
    Ok((StatusCode::CREATED, Json(candidate)))
}

async fn hire_candidate(
    State(board): State<SharedBoard>,
    ids: Result<Path<(u64, u64)>, PathRejection>,
) -> Result<Json<Candidate>, ApiError> {
    let Path((id, candidate_id)) = ids?;
    let mut board = board.write().await;
    let opening = board.opening_mut(id)?;
    let filled = opening.hired >= opening.headcount;
    let candidate = opening
        .candidates
        .iter_mut()
        .find(|c| c.id == candidate_id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "opening {id} has no candidate with id {candidate_id}"
            ))
        })?;
    if candidate.hired {
        // Hiring twice is a retry, not a second hire.
        return Ok(Json(candidate.clone()));
    }
    // Closing waits for the sweep, but the headcount itself is never exceeded.
    if filled {
        return Err(ApiError::conflict(format!(
            "opening {id} has already hired its headcount"
        )));
    }
    candidate.hired = true;
    let candidate = candidate.clone();
    opening.hired += 1;
    Ok(Json(candidate))
}

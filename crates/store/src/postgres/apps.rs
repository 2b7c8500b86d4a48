//! Applications on PostgreSQL.

use super::*;

pub(super) async fn insert_app_row(
    client: &impl deadpool_postgres::GenericClient,
    app: &Application,
) -> Result<()> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO applications ({APP_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7)"
        ))
        .await?;
    client
        .execute(
            &stmt,
            &[
                &app.id.as_str(),
                &app.uid.as_ref().map(Uid::as_str),
                &app.name,
                &app.rate_limit.map(i64::from),
                &json_text(&app.metadata)?,
                &(app.created_at as i64),
                &(app.updated_at as i64),
            ],
        )
        .await
        .map_err(conflict_or("an application with this uid"))?;
    Ok(())
}

/// Removes an application with its endpoints, messages, deliveries and
/// attempts; true when the application existed.
pub(super) async fn delete_app_rows(
    client: &impl deadpool_postgres::GenericClient,
    app: &str,
) -> Result<bool> {
    for table in ["attempts", "deliveries", "messages", "endpoints"] {
        client
            .execute(&format!("DELETE FROM {table} WHERE app_id = $1"), &[&app])
            .await?;
    }
    Ok(client
        .execute("DELETE FROM applications WHERE id = $1", &[&app])
        .await?
        > 0)
}

#[async_trait]
impl AppStore for PgStore {
    async fn insert_app(&self, app: Application) -> Result<Application> {
        insert_app_row(&self.client().await?, &app).await?;
        Ok(app)
    }

    async fn get_app(&self, id_or_uid: &str) -> Result<Option<Application>> {
        let column = key_column(AppId::parse(id_or_uid).is_some());
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {APP_COLS} FROM applications WHERE {column} = $1"),
            &[&id_or_uid],
            app_from_row,
        )
        .await
    }

    async fn list_apps(&self, page: &PageRequest) -> Result<Page<Application>> {
        let rows = self.list(query::apps(page), app_from_row).await?;
        Ok(paginate(rows, page.limit, |a| a.id.to_string()))
    }

    async fn update_app(&self, app: Application) -> Result<Application> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE applications SET uid=$2, name=$3, rate_limit=$4, metadata=$5, updated_at=$6 WHERE id=$1",
            )
            .await?;
        let changed = client
            .execute(
                &stmt,
                &[
                    &app.id.as_str(),
                    &app.uid.as_ref().map(Uid::as_str),
                    &app.name,
                    &app.rate_limit.map(i64::from),
                    &json_text(&app.metadata)?,
                    &(app.updated_at as i64),
                ],
            )
            .await
            .map_err(conflict_or("an application with this uid"))?;
        if changed == 0 {
            return Err(StoreError::NotFound("application".into()));
        }
        Ok(app)
    }

    async fn delete_app(&self, id: &AppId) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let gone = delete_app_rows(&tx, id.as_str()).await?;
        tx.commit().await?;
        Ok(gone)
    }
}
